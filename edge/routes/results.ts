/** Frame and log uploads from render nodes: the seed's multipart form and raw bodies, all streamed. */
import { Hono } from 'hono';
import { HEADER_LEASE_ID, HEADER_RENDER_MS, HEADER_SHA256, HEADER_WORKER_ID, uploadResultFieldsSchema } from '../../protocol/schemas.ts';
import type { AppEnv } from '../app-env.ts';
import { actAsWorker } from '../auth.ts';
import { loadTask, recordTaskLog } from '../db/tasks.ts';
import { fail } from '../errors.ts';
import { frameExtension, storeFrame } from '../frame-store.ts';
import { failIfCutShort, storeStream, watchBody } from '../request-body.ts';
import { logKey, pendingFrameKey } from '../storage-keys.ts';
import { assertLease } from '../task-lease.ts';
import { assertBodySize, contentLength, multipartError, openMultipart, parseOr400, partText, requireId } from '../validation.ts';
import { z } from 'zod';

const rawFrameParamsSchema = z.object({
  worker_id: z.string().regex(/^[0-9a-f-]{36}$/, { message: `the ${HEADER_WORKER_ID} header is missing or not a valid id` }),
  lease_id: z.string().regex(/^[0-9a-f-]{36}$/, { message: `the ${HEADER_LEASE_ID} header is missing or not a valid id` }),
  frame: uploadResultFieldsSchema.shape.frame,
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/, { message: `the ${HEADER_SHA256} header must be a hex SHA-256` })
    .optional(),
  render_ms: uploadResultFieldsSchema.shape.render_ms,
});

/** The text fields of the seed's multipart `POST /upload_result`. */
const UPLOAD_FIELDS: readonly string[] = Object.keys(uploadResultFieldsSchema.shape);

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
    const bucket = c.env.FILES;
    const raw: Record<string, string> = {};
    let pending: { key: string; sha256: string; ext: string } | null = null;
    try {
      // The file may come before the fields that say whose frame it is (curl sends parts in the
      // order of its -F options): it is held under a key of its own until they have been read.
      for await (const part of openMultipart(c, config.maxUploadBytes)) {
        if (part.name === 'file') {
          if (part.filename === undefined) fail(400, 'file must be a file upload, not a text field');
          if (pending) continue; // a second one is skipped: the first counts, as in a FormData
          const ext = frameExtension(part.filename.includes('.') ? part.filename.split('.').pop() : null);
          const stored = await storeStream(bucket, pendingFrameKey(crypto.randomUUID()), part.body, {
            checkHead: (head) => head.length === 0 && fail(400, 'file is empty'),
          });
          pending = { key: stored.key, sha256: stored.sha256, ext };
        } else if (part.name !== undefined && UPLOAD_FIELDS.includes(part.name)) {
          const value = await partText(part, part.name);
          if (value !== undefined) raw[part.name] ??= value;
        }
      }
      const fields = parseOr400(uploadResultFieldsSchema, raw);
      actAsWorker(c, fields.worker_id);
      c.set('noJobFinished', true); // an upload ends no job
      if (!pending) fail(400, 'file is required (the rendered image)');
      const held = await bucket.get(pending.key);
      if (!held) fail(500, 'the uploaded frame vanished before it was stored');
      const info = await storeFrame(c.env.DB, bucket, {
        workerId: fields.worker_id,
        taskId: fields.task_id,
        leaseId: fields.lease_id,
        frame: fields.frame,
        ext: pending.ext,
        body: held.body,
        sha256: pending.sha256,
        renderMs: fields.render_ms ?? null,
        leaseMs: c.get('config').leaseMs,
      });
      return c.json(info, 201);
    } catch (err) {
      multipartError(err);
    } finally {
      if (pending) await bucket.delete(pending.key).catch((e) => console.error(`deleting held upload ${pending!.key}:`, e));
    }
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
      leaseMs: config.leaseMs,
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
    await recordTaskLog(c.env.DB, taskId, leaseId, key);
    return c.json({ task_id: taskId, log_url: `/jobs/${task.job_id}/tasks/${taskId}/log` }, 201);
  });
