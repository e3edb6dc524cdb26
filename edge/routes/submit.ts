/** `POST /submit_job`: the seed's multipart submission of a .blend and a frame range (or a frame list, `frames`). */
import { Hono } from 'hono';
import { submitJobFieldsSchema, type SubmitJobResponse } from '../../protocol/schemas.ts';
import { checkBlendHeader } from '../blend-header.ts';
import { findBlob, type StoredBlob } from '../blob-store.ts';
import { saveBlob } from '../db/blobs.ts';
import { fail } from '../errors.ts';
import { newJobFrames } from '../frame-ranges.ts';
import { insertJob, jobSettings } from '../job-insert.ts';
import type { AppEnv } from '../app-env.ts';
import { storeStream, type StreamedObject } from '../request-body.ts';
import { blendFileName, submittedBlobKey } from '../storage-keys.ts';
import { multipartError, openMultipart, parseOr400, partText } from '../validation.ts';

const FIELDS: readonly string[] = [
  'start_frame',
  'end_frame',
  'frames',
  'chunk_size',
  'priority',
  'name',
  'max_attempts',
  'max_node_losses',
  'webhook_url',
  'device',
  'tags',
  'tiles',
  'preview_video',
  'order',
];

/** The form's fields, checked, and the job's frames (checked against MAX_FRAMES_PER_JOB). */
function checkFields(raw: Record<string, string>, maxFramesPerJob: number) {
  const fields = parseOr400(submitJobFieldsSchema, raw);
  return { fields, frames: newJobFrames(fields, maxFramesPerJob) };
}

/**
 * Keeps a streamed .blend as the blob of its hash, or drops it for the copy already stored: the
 * same file submitted twice is stored once, and the first record of a hash wins a race.
 */
async function keepBlob(db: D1Database, bucket: R2Bucket, file: StreamedObject): Promise<StoredBlob> {
  const existing = await findBlob(db, bucket, file.sha256);
  if (!existing) {
    await saveBlob(db, { sha256: file.sha256, size: file.size, key: file.key }, Date.now());
  }
  const kept = existing ?? (await findBlob(db, bucket, file.sha256))!;
  if (kept.key !== file.key) await bucket.delete(file.key);
  return kept;
}

export const submitRoutes = new Hono<AppEnv>().post('/submit_job', async (c) => {
  const config = c.get('config');
  const bucket = c.env.FILES;
  // Streamed: the file goes to R2 as it arrives, whatever the order of the parts (curl sends
  // them in the order of its -F options, the seed's README puts the file first).
  const parts = openMultipart(
    c,
    config.maxUploadBytes,
    'Submit larger files and projects with the CLI, which uploads in resumable parts: npx farm submit FILE.blend --frames 1-250',
  );
  const raw: Record<string, string> = {};
  let file: (StreamedObject & { name: string }) | null = null;
  let checked: ReturnType<typeof checkFields>;
  try {
    for await (const part of parts) {
      if (part.name === 'blend_file') {
        if (part.filename === undefined) fail(400, 'blend_file must be a file upload, not a text field (use -F "blend_file=@path")');
        if (file) continue; // a second one is skipped: the first counts, as in a FormData
        // Fields sent before the file are checked before any of it is stored.
        if (raw.frames !== undefined || (raw.start_frame !== undefined && raw.end_frame !== undefined)) checkFields(raw, config.maxFramesPerJob);
        const stored = await storeStream(bucket, submittedBlobKey(crypto.randomUUID()), part.body, {
          httpMetadata: { contentType: 'application/x-blender' },
          checkHead: (head) => (head.length === 0 ? fail(400, 'blend_file is empty') : checkBlendHeader(head, 'blend_file')),
        });
        file = { ...stored, name: part.filename };
      } else if (part.name !== undefined && FIELDS.includes(part.name)) {
        const value = await partText(part, part.name);
        if (value !== undefined) raw[part.name] ??= value;
      }
    }
    if (!file) fail(400, 'blend_file is required (attach the .blend with -F "blend_file=@scene.blend")');
    checked = checkFields(raw, config.maxFramesPerJob);
  } catch (err) {
    // A refused form leaves nothing behind: the file stored before its fields were read goes.
    if (file) await bucket.delete(file.key).catch((e) => console.error(`deleting refused upload ${file!.key}:`, e));
    multipartError(err);
  }
  const { fields, frames } = checked;
  const blob = await keepBlob(c.env.DB, bucket, file);
  const sha256 = blob.sha256;

  // The file's name as the client sent it may carry a path ("C:\\scenes\\x.blend", "../x.blend"):
  // only its last part, without control characters, names the job.
  const fileName = file.name
    .split(/[\\/]/)
    .pop()!
    .replace(/[\u0000-\u001f\u007f]/g, '')
    .trim();
  const name = fields.name ?? (fileName.replace(/\.blend$/i, '').replace(/^\.+$/, '') || 'untitled');
  // One row, whatever the frame count: tasks are created as nodes claim frame ranges.
  const jobId = await insertJob(c.env.DB, {
    name,
    ...jobSettings(fields, frames),
    blendFile: blendFileName(sha256),
    sha256,
    size: blob.size,
    inputKind: 'blend',
    mainBlend: null,
  });
  c.get('wake')();
  const body: SubmitJobResponse = { job_id: jobId, status: 'queued', total_frames: frames.totalFrames, blend_file: blendFileName(sha256) };
  return c.json(body, 201);
});
