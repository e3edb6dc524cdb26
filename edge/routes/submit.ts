/** `POST /submit_job`: the seed's multipart submission of a .blend and a frame range. */
import { Hono } from 'hono';
import { submitJobFieldsSchema, type SubmitJobResponse } from '../../protocol/schemas.ts';
import { checkBlendHeader } from '../blend-header.ts';
import { fail } from '../errors.ts';
import type { AppEnv } from '../app-env.ts';
import { blendKey, blendFileName } from '../storage-keys.ts';
import { formText, parseOr400, readMultipart, sha256Hex } from '../validation.ts';

const FIELDS = ['start_frame', 'end_frame', 'chunk_size', 'priority', 'name', 'max_attempts'] as const;

export const submitRoutes = new Hono<AppEnv>().post('/submit_job', async (c) => {
  const config = c.get('config');
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
    fail(400, `the job has ${totalFrames} frames, over the limit of ${config.maxFramesPerJob} per job`);
  }

  const bytes = new Uint8Array(await file.arrayBuffer());
  await checkBlendHeader(bytes.subarray(0, 64 * 1024), 'blend_file');
  const sha256 = await sha256Hex(bytes);
  const key = blendKey(sha256);
  // Content-addressed: the same file submitted twice is stored once.
  if (!(await c.env.FILES.head(key))) {
    await c.env.FILES.put(key, bytes, { sha256, httpMetadata: { contentType: 'application/x-blender' } });
  }

  const jobId = crypto.randomUUID();
  const now = Date.now();
  const name = fields.name ?? (file.name.replace(/\.blend$/i, '') || 'untitled');
  // One row, whatever the frame count: tasks are created as nodes claim frame ranges.
  await c.env.DB.prepare(
    `INSERT INTO jobs (id, name, status, priority, start_frame, end_frame, chunk_size, next_frame, blend_file,
       blend_sha256, blend_size, max_attempts, created_at, updated_at)
     VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  )
    .bind(
      jobId,
      name.slice(0, 200),
      fields.priority ?? 50,
      fields.start_frame,
      fields.end_frame,
      fields.chunk_size ?? null,
      fields.start_frame,
      blendFileName(sha256),
      sha256,
      bytes.length,
      fields.max_attempts ?? 3,
      now,
      now,
    )
    .run();
  c.get('wake')();
  const body: SubmitJobResponse = { job_id: jobId, status: 'queued', total_frames: totalFrames, blend_file: blendFileName(sha256) };
  return c.json(body, 201);
});
