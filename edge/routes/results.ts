/** Frame and log uploads from render nodes: the seed's multipart form, and streamed raw bodies. */
import { Hono } from 'hono';
import {
  HEADER_LEASE_ID,
  HEADER_RENDER_MS,
  HEADER_SHA256,
  HEADER_WORKER_ID,
  uploadResultFieldsSchema,
} from '../../protocol/schemas.ts';
import type { AppEnv } from '../app-env.ts';
import { actAsWorker } from '../auth.ts';
import { fail } from '../errors.ts';
import { frameExtension, storeFrame } from '../frame-store.ts';
import { failIfCutShort, watchBody } from '../request-body.ts';
import { logKey } from '../storage-keys.ts';
import { assertLease, loadTask } from '../task-lease.ts';
import { assertBodySize, contentLength, formText, parseOr400, readMultipart, requireId, sha256Hex } from '../validation.ts';
import { z } from 'zod';

const rawFrameParamsSchema = z.object({
  worker_id: z.string().regex(/^[0-9a-f-]{36}$/, { message: `the ${HEADER_WORKER_ID} header is missing or not a valid id` }),
  lease_id: z.string().regex(/^[0-9a-f-]{36}$/, { message: `the ${HEADER_LEASE_ID} header is missing or not a valid id` }),
  frame: uploadResultFieldsSchema.shape.frame,
  sha256: z.string().regex(/^[0-9a-f]{64}$/, { message: `the ${HEADER_SHA256} header must be a hex SHA-256` }).optional(),
  render_ms: uploadResultFieldsSchema.shape.render_ms,
});

/** A raw upload must declare its length so R2 can stream it without buffering. */
function requireStreamLength(c: Parameters<typeof contentLength>[0], max: number): void {
  const length = contentLength(c);
  if (length === null) fail(411, 'a raw upload needs a Content-Length header');
  if (length === 0) fail(400, 'the upload is empty');
  assertBodySize(c, max, 'the upload', 'MAX_UPLOAD_BYTES');
}

export const resultRoutes = new Hono<AppEnv>()
  .post('/upload_result', async (c) => {
    const config = c.get('config');
    const form = await readMultipart(c, config.maxSubmitBytes);
    const fields = parseOr400(uploadResultFieldsSchema, {
      worker_id: formText(form, 'worker_id'),
      task_id: formText(form, 'task_id'),
      lease_id: formText(form, 'lease_id'),
      frame: formText(form, 'frame'),
      render_ms: formText(form, 'render_ms'),
    });
    actAsWorker(c, fields.worker_id);
    c.set('noJobFinished', true); // an upload ends no job
    const file = form.get('file');
    if (file === null) fail(400, 'file is required (the rendered image)');
    if (typeof file === 'string') fail(400, 'file must be a file upload, not a text field');
    if (file.size === 0) fail(400, 'file is empty');
    const ext = frameExtension(file.name.includes('.') ? file.name.split('.').pop() : null);
    const bytes = new Uint8Array(await file.arrayBuffer());
    const info = await storeFrame(c.env.DB, c.env.FILES, {
      workerId: fields.worker_id,
      taskId: fields.task_id,
      leaseId: fields.lease_id,
      frame: fields.frame,
      ext,
      body: bytes,
      sha256: await sha256Hex(bytes),
      renderMs: fields.render_ms ?? null,
    });
    return c.json(info, 201);
  })
  // Streamed variant: `PUT /tasks/{task_id}/frames/{frame}?ext=png`, lease in headers, body = the image.
  .put('/tasks/:task_id/frames/:frame', async (c) => {
    const config = c.get('config');
    const taskId = requireId(c.req.param('task_id'), 'task_id');
    const params = parseOr400(rawFrameParamsSchema, {
      worker_id: c.req.header(HEADER_WORKER_ID),
      lease_id: c.req.header(HEADER_LEASE_ID),
      frame: c.req.param('frame'),
      sha256: c.req.header(HEADER_SHA256)?.toLowerCase(),
      render_ms: c.req.header(HEADER_RENDER_MS),
    });
    actAsWorker(c, params.worker_id);
    c.set('noJobFinished', true); // an upload ends no job
    const ext = frameExtension(c.req.query('ext'));
    requireStreamLength(c, config.maxUploadBytes);
    // A node that dies mid-upload cuts the body off: that is a 400, not the master's fault.
    const body = watchBody(c.req.raw.body!, contentLength(c)!);
    const info = await storeFrame(c.env.DB, c.env.FILES, {
      workerId: params.worker_id,
      taskId,
      leaseId: params.lease_id,
      frame: params.frame,
      ext,
      body: body.stream,
      cutShort: body.cutShort,
      sha256: params.sha256 ?? null,
      renderMs: params.render_ms ?? null,
    });
    return c.json(info, 201);
  })
  // A task attempt's full Blender log, streamed; readable at /jobs/{job}/tasks/{task}/log.
  .put('/tasks/:task_id/log', async (c) => {
    const config = c.get('config');
    const taskId = requireId(c.req.param('task_id'), 'task_id');
    const workerId = requireId(c.req.header(HEADER_WORKER_ID), HEADER_WORKER_ID);
    const leaseId = requireId(c.req.header(HEADER_LEASE_ID), HEADER_LEASE_ID);
    actAsWorker(c, workerId);
    c.set('noJobFinished', true); // an upload ends no job
    requireStreamLength(c, config.maxUploadBytes);
    const task = assertLease(await loadTask(c.env.DB, taskId), taskId, workerId, leaseId, false);
    const key = logKey(task.job_id, task.id, task.attempts);
    const body = watchBody(c.req.raw.body!, contentLength(c)!);
    try {
      await c.env.FILES.put(key, body.stream, { httpMetadata: { contentType: 'text/plain; charset=utf-8' } });
    } catch (err) {
      failIfCutShort(err, body, 'the log');
      throw err;
    }
    await c.env.DB.prepare(`UPDATE tasks SET log_key = ? WHERE id = ? AND lease_id = ?`).bind(key, taskId, leaseId).run();
    return c.json({ task_id: taskId, log_url: `/jobs/${task.job_id}/tasks/${taskId}/log` }, 201);
  });
