/**
 * Projects stored file by file: `POST /manifests` answers which blobs are missing, only those are
 * uploaded, `POST /jobs` with kind "manifest" needs them all, nodes get the manifest and its files,
 * `GET /jobs/{id}` shows the inputs and the bytes sent, and a job's deletion keeps the files other
 * jobs use. Inside workerd with the real D1 and R2 bindings.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { canonicalManifest, manifestSha256, type Manifest, type ManifestResponse } from '../../protocol/manifest.ts';
import type { JobStatusResponse, SubmitJobResponse, UploadState } from '../../protocol/schemas.ts';
import { runScheduledWork } from '../../edge/cron.ts';
import { blendBytes, call, claim, expectError, json, postJson, registerWorker, sha256 } from './helpers.ts';

const DAY = 86_400_000;
const text = (s: string) => new TextEncoder().encode(s);

/** Uploads `bytes` as one blob (one part: they are small) unless the master has it. */
async function upload(bytes: Uint8Array): Promise<void> {
  const sha = await sha256(bytes);
  const state = await json<UploadState>(await postJson(`/blobs/${sha}/uploads`, { size: bytes.length }), 201);
  const put = await call(`/blobs/${sha}/uploads/${state.upload_id}/parts/1`, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) },
    body: bytes,
  });
  expect(put.status).toBe(200);
  expect((await call(`/blobs/${sha}/uploads/${state.upload_id}/complete`, { method: 'POST' })).status).toBe(201);
}

async function manifestOf(files: Record<string, Uint8Array>, main = 'scene.blend'): Promise<Manifest> {
  const list = await Promise.all(Object.entries(files).map(async ([path, bytes]) => ({ path, sha256: await sha256(bytes), size: bytes.length })));
  return { version: 1, main_blend: main, files: list };
}

const postManifest = (manifest: unknown) => postJson('/manifests', manifest);
const createJob = (sha: string, extra: Record<string, unknown> = {}) =>
  postJson('/jobs', { blob_sha256: sha, kind: 'manifest', start_frame: 1, end_frame: 2, ...extra });

describe('projects as manifests', () => {
  it('uploads only what the master lacks, creates the job, and shows its inputs and the bytes sent', async () => {
    const blend = blendBytes(4096, 'manifest-v1');
    const texture = text('texture bytes '.repeat(100));
    const files = { 'scene.blend': blend, 'tex/wood.png': texture, 'empty.txt': new Uint8Array(0) };
    const manifest = await manifestOf(files);
    const first = await json<ManifestResponse>(await postManifest(manifest), 200);
    // The hash is the canonical text's, whatever order the files came in.
    expect(first.manifest_sha256).toBe(await manifestSha256(canonicalManifest({ ...manifest, files: [...manifest.files].reverse() })));
    expect(first.files).toBe(3);
    // The empty file needs no upload.
    expect(first.missing.map((b) => b.sha256).sort()).toEqual([await sha256(blend), await sha256(texture)].sort());
    expect(first.missing_bytes).toBe(blend.length + texture.length);

    await expectError(await createJob(first.manifest_sha256), 409, 'lacks');
    await upload(blend);
    await upload(texture);
    const job = await json<SubmitJobResponse>(await createJob(first.manifest_sha256), 201);
    expect(job.blend_file).toBe(`${first.manifest_sha256}.manifest`);
    const status = await json<JobStatusResponse>(await call(`/jobs/${job.job_id}`), 200);
    expect(status.name).toBe('scene');
    expect(status.inputs).toEqual({
      kind: 'manifest',
      files: [
        { path: 'empty.txt', sha256: await sha256(new Uint8Array(0)), size: 0 },
        { path: 'scene.blend', sha256: await sha256(blend), size: blend.length },
        { path: 'tex/wood.png', sha256: await sha256(texture), size: texture.length },
      ],
      total_bytes: blend.length + texture.length,
      sent_bytes: blend.length + texture.length,
    });

    // A tweak to the .blend: only it is missing, and only it counts as sent.
    const blend2 = blendBytes(4096, 'manifest-v2');
    const second = await json<ManifestResponse>(await postManifest(await manifestOf({ ...files, 'scene.blend': blend2 })), 200);
    expect(second.manifest_sha256).not.toBe(first.manifest_sha256);
    expect(second.missing).toEqual([{ sha256: await sha256(blend2), size: blend2.length }]);
    await upload(blend2);
    const job2 = await json<SubmitJobResponse>(await createJob(second.manifest_sha256), 201);
    const status2 = await json<JobStatusResponse>(await call(`/jobs/${job2.job_id}`), 200);
    expect(status2.inputs!.sent_bytes).toBe(blend2.length);

    // Unchanged: nothing is missing, nothing is sent.
    const third = await json<ManifestResponse>(await postManifest(await manifestOf({ ...files, 'scene.blend': blend2 })), 200);
    expect(third).toMatchObject({ manifest_sha256: second.manifest_sha256, missing: [], missing_bytes: 0 });
    const job3 = await json<SubmitJobResponse>(await createJob(third.manifest_sha256), 201);
    expect((await json<JobStatusResponse>(await call(`/jobs/${job3.job_id}`), 200)).inputs!.sent_bytes).toBe(0);
  });

  it('a node is told the input is a manifest, downloads it by hash, and each file it lists', async () => {
    const blend = blendBytes(2048, 'node-manifest');
    const texture = text('node texture');
    const answer = await json<ManifestResponse>(await postManifest(await manifestOf({ 'shots/a.blend': blend, 'tex/t.png': texture }, 'shots/a.blend')), 200);
    await upload(blend);
    await upload(texture);
    // Ahead of the other tests' jobs, which share this file's storage.
    await json(await createJob(answer.manifest_sha256, { end_frame: 1, priority: 100 }), 201);
    const task = await claim(await registerWorker('manifest-node'));
    expect(task).toMatchObject({
      input_kind: 'manifest',
      blend_file: `${answer.manifest_sha256}.manifest`,
      blend_sha256: answer.manifest_sha256,
      main_blend: 'shots/a.blend',
    });

    const res = await call(`/download_blend/${task.blend_file}`);
    expect(res.status).toBe(200);
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect(await sha256(bytes)).toBe(answer.manifest_sha256);
    const stored = JSON.parse(new TextDecoder().decode(bytes)) as Manifest;
    expect(stored.files.map((f) => f.path)).toEqual(['shots/a.blend', 'tex/t.png']);

    const file = await call(`/manifests/${answer.manifest_sha256}/files/${await sha256(texture)}`);
    expect(file.status).toBe(200);
    expect(new TextDecoder().decode(await file.arrayBuffer())).toBe('node texture');
    // A node resumes a download cut short from where it stopped.
    const rest = await call(`/manifests/${answer.manifest_sha256}/files/${await sha256(texture)}`, { headers: { range: 'bytes=5-' } });
    expect(rest.status).toBe(206);
    expect(rest.headers.get('content-range')).toBe('bytes 5-11/12');
    expect(new TextDecoder().decode(await rest.arrayBuffer())).toBe('texture');
    // Only files the manifest lists are served through it.
    await expectError(await call(`/manifests/${answer.manifest_sha256}/files/${'0'.repeat(64)}`), 404, 'lists no file');
  });

  it('refuses a job whose main .blend is not a .blend, and a manifest that is unknown', async () => {
    const fake = text('not a blend at all');
    const answer = await json<ManifestResponse>(await postManifest(await manifestOf({ 'scene.blend': fake })), 200);
    await upload(fake);
    await expectError(await createJob(answer.manifest_sha256), 400, 'main_blend "scene.blend"');
    await expectError(await createJob('1'.repeat(64)), 404, 'no manifest');
  });

  it('deleting a job keeps the files another job uses; unused ones go after the retention', async () => {
    const shared = text('shared texture');
    const blendA = blendBytes(1024, 'retention-a');
    const blendB = blendBytes(1024, 'retention-b');
    const a = await json<ManifestResponse>(await postManifest(await manifestOf({ 'scene.blend': blendA, 'tex.png': shared })), 200);
    const b = await json<ManifestResponse>(await postManifest(await manifestOf({ 'scene.blend': blendB, 'tex.png': shared })), 200);
    for (const bytes of [shared, blendA, blendB]) await upload(bytes);
    const jobA = await json<SubmitJobResponse>(await createJob(a.manifest_sha256), 201);
    await json<SubmitJobResponse>(await createJob(b.manifest_sha256), 201);
    expect((await call(`/jobs/${jobA.job_id}`, { method: 'DELETE' })).status).toBe(200);
    await env.DB.prepare(`UPDATE blobs SET created_at = ?`)
      .bind(Date.now() - 30 * DAY)
      .run();

    await runScheduledWork(env, Date.now() + 8 * DAY);
    const left = new Set((await env.DB.prepare(`SELECT sha256 FROM blobs`).all<{ sha256: string }>()).results.map((r) => r.sha256));
    expect(left.has(await sha256(shared))).toBe(true);
    expect(left.has(await sha256(blendB))).toBe(true);
    expect(left.has(b.manifest_sha256)).toBe(true);
    // Job A's own .blend and manifest are gone, with the manifest's file list.
    expect(left.has(await sha256(blendA))).toBe(false);
    expect(left.has(a.manifest_sha256)).toBe(false);
    const rows = await env.DB.prepare(`SELECT COUNT(*) AS n FROM manifest_files WHERE manifest_sha256 = ?`).bind(a.manifest_sha256).first<{ n: number }>();
    expect(rows!.n).toBe(0);
  });
});
