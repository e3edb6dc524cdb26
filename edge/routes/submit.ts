/** `POST /submit_job`: the seed's multipart submission of a .blend and a frame range. */
import { Hono } from 'hono';
import { submitJobFieldsSchema, type SubmitJobResponse } from '../../protocol/schemas.ts';
import { checkBlendHeader } from '../blend-header.ts';
import { recordBlobStatement } from '../blob-store.ts';
import { fail } from '../errors.ts';
import { insertJob } from '../job-insert.ts';
import type { AppEnv } from '../app-env.ts';
import { blendKey, blendFileName } from '../storage-keys.ts';
import { contentLength, formText, parseOr400, readMultipart, sha256Hex } from '../validation.ts';

const FIELDS = ['start_frame', 'end_frame', 'chunk_size', 'priority', 'name', 'max_attempts', 'webhook_url', 'device', 'tags', 'tiles', 'preview_video'] as const;

export const submitRoutes = new Hono<AppEnv>().post('/submit_job', async (c) => {
  const config = c.get('config');
  // workerd buffers a multipart body whole, so big files go through the chunked blob uploads.
  const declared = contentLength(c);
  if (declared !== null && declared > config.maxSubmitBytes) {
    fail(
      413,
      `the multipart body is ${declared} bytes, over the limit of ${config.maxSubmitBytes} bytes (MAX_SUBMIT_BYTES) for POST /submit_job. ` +
        'Submit larger files and projects with the CLI, which uploads in resumable parts: npx farm submit FILE.blend --frames 1-250',
    );
  }
  const form = await readMultipart(c, config.maxSubmitBytes);
  const file = form.get('blend_file');
  if (file === null) fail(400, 'blend_file is required (attach the .blend with -F "blend_file=@scene.blend")');
  if (typeof file === 'string') fail(400, 'blend_file must be a file upload, not a text field (use -F "blend_file=@path")');

  const raw: Record<string, string> = {};
  for (const field of FIELDS) {
    const value = formText(form, field);
    if (value !== undefined) raw[field] = value;
  }
  const fields = parseOr400(submitJobFieldsSchema, raw);
  const totalFrames = fields.end_frame - fields.start_frame + 1;
  if (totalFrames > config.maxFramesPerJob) {
    fail(413, `the job has ${totalFrames} frames, over the limit of ${config.maxFramesPerJob} per job (MAX_FRAMES_PER_JOB)`);
  }

  const bytes = new Uint8Array(await file.arrayBuffer());
  await checkBlendHeader(bytes.subarray(0, 64 * 1024), 'blend_file');
  const sha256 = await sha256Hex(bytes);
  const key = blendKey(sha256);
  // Content-addressed: the same file submitted twice is stored once.
  if (!(await c.env.FILES.head(key))) {
    await c.env.FILES.put(key, bytes, { sha256, httpMetadata: { contentType: 'application/x-blender' } });
  }

  // Recorded as a blob too, so `farm submit` of the same file uploads nothing.
  await recordBlobStatement(c.env.DB, { sha256, size: bytes.length, key }, Date.now()).run();

  // The file's name as the client sent it may carry a path ("C:\\scenes\\x.blend", "../x.blend"):
  // only its last part, without control characters, names the job.
  const fileName = file.name.split(/[\\/]/).pop()!.replace(/[\u0000-\u001f\u007f]/g, '').trim();
  const name = fields.name ?? (fileName.replace(/\.blend$/i, '').replace(/^\.+$/, '') || 'untitled');
  // One row, whatever the frame count: tasks are created as nodes claim frame ranges.
  const jobId = await insertJob(c.env.DB, {
    name,
    priority: fields.priority ?? 50,
    startFrame: fields.start_frame,
    endFrame: fields.end_frame,
    chunkSize: fields.chunk_size ?? null,
    maxAttempts: fields.max_attempts ?? 3,
    blendFile: blendFileName(sha256),
    sha256,
    size: bytes.length,
    inputKind: 'blend',
    mainBlend: null,
    warnings: [],
    webhookUrl: fields.webhook_url ?? null,
    device: fields.device,
    tags: fields.tags,
    tiles: fields.tiles ?? null,
    previewVideo: fields.preview_video ?? false,
  });
  c.get('wake')();
  const body: SubmitJobResponse = { job_id: jobId, status: 'queued', total_frames: totalFrames, blend_file: blendFileName(sha256) };
  return c.json(body, 201);
});
