/**
 * `POST /jobs`: a job whose input is a blob uploaded beforehand (see blobs.ts), a .blend or a
 * project .zip, or a project manifest whose files were uploaded as blobs (see manifests.ts). JSON, so it carries no file: any size of project is submitted the same way.
 */
import { Hono, type Context } from 'hono';
import { createJobSchema, type CreateJobRequest, type SubmitJobResponse } from '../../protocol/schemas.ts';
import type { AppEnv } from '../app-env.ts';
import { assertArchiveWithinLimits } from '../archive-limits.ts';
import { checkBlendHeader } from '../blend-header.ts';
import { findBlob } from '../blob-store.ts';
import { fail } from '../errors.ts';
import { newJobFrames, type JobFrames } from '../frame-ranges.ts';
import { insertJob, jobSettings } from '../job-insert.ts';
import { mainBlendBlob, requireCompleteManifest } from '../manifest-store.ts';
import { inputFileName } from '../storage-keys.ts';
import { readJson } from '../validation.ts';

/** The first `length` bytes of an object, read with a range request. */
async function head(bucket: R2Bucket, key: string, length: number): Promise<Uint8Array> {
  const object = await bucket.get(key, { range: { offset: 0, length } });
  if (!object) fail(404, 'the blob vanished while the job was being created');
  return new Uint8Array(await object.arrayBuffer());
}

const ZIP_LOCAL_HEADER = [0x50, 0x4b, 0x03, 0x04];

export const blobJobRoutes = new Hono<AppEnv>().post('/jobs', async (c) => {
  const config = c.get('config');
  const body = await readJson(c, createJobSchema, config.maxJsonBytes);
  const frames = newJobFrames(body, config.maxFramesPerJob);
  if (body.kind === 'manifest') return c.json(await createManifestJob(c, body, frames), 201);
  const blob = await findBlob(c.env.DB, c.env.FILES, body.blob_sha256);
  if (!blob) {
    fail(404, `no blob ${body.blob_sha256} on this master: upload it first (POST /blobs/${body.blob_sha256}/uploads, or \`farm submit\`)`);
  }
  const first = await head(c.env.FILES, blob.key, 64 * 1024);
  if (body.kind === 'blend') {
    await checkBlendHeader(first, 'the blob');
  } else if (!ZIP_LOCAL_HEADER.every((b, i) => first[i] === b)) {
    fail(400, 'the blob is not a .zip archive (it does not start with a ZIP entry); send kind "blend" for a .blend file');
  } else {
    await assertArchiveWithinLimits(c.env.FILES, blob.key, blob.size, { maxFiles: config.maxArchiveFiles, maxBytes: config.maxArchiveBytes });
  }

  const blendFile = inputFileName(blob.sha256, body.kind);
  const jobId = await insertJob(c.env.DB, {
    ...jobSettings(body, frames),
    name:
      body.name ??
      (body.main_blend
        ?.split('/')
        .pop()
        ?.replace(/\.blend$/i, '') ||
        `job ${blob.sha256.slice(0, 8)}`),
    blendFile,
    sha256: blob.sha256,
    size: blob.size,
    inputKind: body.kind,
    mainBlend: body.main_blend ?? null,
  });
  c.get('wake')();
  const answer: SubmitJobResponse = { job_id: jobId, status: 'queued', total_frames: frames.totalFrames, blend_file: blendFile };
  return c.json(answer, 201);
});

/**
 * A job from a project manifest (`blob_sha256` names the manifest): every file must be stored,
 * and the main .blend must look like one. Nodes download `<sha256>.manifest`, then its files.
 */
async function createManifestJob(c: Context<AppEnv>, body: CreateJobRequest, frames: JobFrames): Promise<SubmitJobResponse> {
  const { manifest, sentBytes } = await requireCompleteManifest(c.env.DB, body.blob_sha256);
  const main = await mainBlendBlob(c.env.DB, manifest);
  if (!main) fail(404, `the main .blend of manifest ${manifest.sha256.slice(0, 12)} is not stored`);
  await checkBlendHeader(await head(c.env.FILES, main.key, 64 * 1024), `main_blend "${manifest.main_blend}"`);
  const blendFile = inputFileName(manifest.sha256, 'manifest');
  const jobId = await insertJob(c.env.DB, {
    ...jobSettings(body, frames),
    name:
      body.name ??
      (manifest.main_blend
        .split('/')
        .pop()!
        .replace(/\.blend$/i, '') ||
        `job ${manifest.sha256.slice(0, 8)}`),
    blendFile,
    sha256: manifest.sha256,
    size: Number(manifest.total_bytes),
    inputKind: 'manifest',
    mainBlend: manifest.main_blend,
    inputSentBytes: sentBytes,
  });
  c.get('wake')();
  return { job_id: jobId, status: 'queued', total_frames: frames.totalFrames, blend_file: blendFile };
}
