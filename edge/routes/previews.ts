/**
 * Frame previews: small JPEG (or PNG) images that a node makes of each frame it uploads, so the
 * dashboard can show thumbnails of any output format (EXR frames do not display in a browser,
 * and 4K PNGs are too heavy for a grid).
 *
 *  - `PUT /tasks/{task_id}/frames/{frame}/preview`: raw body, lease in the same headers as frame
 *    uploads; accepted only from the lease's holder (also once the task completed) and after the
 *    frame itself was stored.
 *  - `GET /jobs/{job_id}/frames/{frame}/preview`: the image; 404 when the node made none (the
 *    dashboard then shows the frame itself when it is a PNG or JPEG).
 */
import { Hono } from 'hono';
import { MAX_PREVIEW_BYTES } from '../../protocol/api.ts';
import { HEADER_LEASE_ID, HEADER_WORKER_ID } from '../../protocol/schemas.ts';
import type { AppEnv } from '../app-env.ts';
import { actAsWorker } from '../auth.ts';
import { framePreviewKey, liveFrame, recordFramePreview } from '../db/frames.ts';
import { fail } from '../errors.ts';
import { requireJobRow } from '../job-status.ts';
import { failIfCutShort, watchBody } from '../request-body.ts';
import { previewKey } from '../storage-keys.ts';
import { loadTask } from '../db/tasks.ts';
import { assertLease, assertTaskFrame } from '../task-lease.ts';
import { assertBodySize, contentLength, requireId } from '../validation.ts';

const PREVIEW_TYPES: Record<string, 'jpg' | 'png'> = { 'image/jpeg': 'jpg', 'image/png': 'png' };

function parseFrame(value: string): number {
  if (!/^\d{1,7}$/.test(value)) fail(400, 'frame must be a whole number');
  return Number(value);
}

/** The URL the frame list gives for a stored preview. */
export const previewUrl = (jobId: string, frame: number) => `/jobs/${jobId}/frames/${frame}/preview`;

export const previewRoutes = new Hono<AppEnv>()
  .put('/tasks/:task_id/frames/:frame/preview', async (c) => {
    const taskId = requireId(c.req.param('task_id'), 'task_id');
    const frame = parseFrame(c.req.param('frame'));
    const workerId = requireId(c.req.header(HEADER_WORKER_ID), HEADER_WORKER_ID);
    const leaseId = requireId(c.req.header(HEADER_LEASE_ID), HEADER_LEASE_ID);
    actAsWorker(c, workerId);
    c.set('noJobFinished', true); // an upload ends no job
    const mediaType = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
    const ext = PREVIEW_TYPES[mediaType];
    if (!ext) fail(415, `send the preview as image/jpeg or image/png (got ${c.req.header('content-type') ?? 'no Content-Type'})`);
    const length = contentLength(c);
    if (length === null) fail(411, 'a preview upload needs a Content-Length header');
    if (length === 0) fail(400, 'the preview is empty');
    assertBodySize(c, MAX_PREVIEW_BYTES, 'the preview');

    // A completed task still accepts its previews: the job may have completed (and closed the
    // task) the moment its last frame was stored, while that frame's preview was being made.
    const task = assertLease(await loadTask(c.env.DB, taskId), taskId, workerId, leaseId, false);
    if (task.status !== 'running' && task.status !== 'completed') fail(409, `task ${taskId} is ${task.status}: stop working on it`);
    assertTaskFrame(task, frame);
    const existing = await framePreviewKey(c.env.DB, task.job_id, frame);
    if (!existing) fail(409, `frame ${frame} of task ${taskId} was not uploaded yet: upload the frame before its preview`);

    const key = previewKey(task.job_id, frame, ext, crypto.randomUUID());
    const body = watchBody(c.req.raw.body!, length);
    try {
      await c.env.FILES.put(key, body.stream, { httpMetadata: { contentType: mediaType } });
    } catch (err) {
      failIfCutShort(err, body, 'the preview');
      throw err;
    }
    // Recorded only while the lease is still held, like frames; the replaced preview is deleted.
    const recorded = await recordFramePreview(c.env.DB, { taskId, leaseId, jobId: task.job_id }, frame, key);
    if (!recorded) {
      await c.env.FILES.delete(key);
      fail(409, `lease ${leaseId} of task ${taskId} ended while the preview was uploading; it was not recorded`);
    }
    if (existing.preview_key && existing.preview_key !== key) {
      await c.env.FILES.delete(existing.preview_key).catch((err) => console.error(`deleting replaced preview ${existing.preview_key}:`, err));
    }
    return c.json({ job_id: task.job_id, frame, preview_url: previewUrl(task.job_id, frame), size: length }, 201);
  })
  .get('/jobs/:job_id/frames/:frame/preview', async (c) => {
    const jobId = requireId(c.req.param('job_id'), 'job_id');
    const frame = parseFrame(c.req.param('frame'));
    const row = await liveFrame(c.env.DB, jobId, frame);
    if (!row) {
      await requireJobRow(c.env.DB, jobId);
      fail(404, `frame ${frame} of job ${jobId} has not been rendered yet`);
    }
    if (!row.preview_key) fail(404, `frame ${frame} of job ${jobId} has no preview (the node made none); fetch the frame itself`);
    const object = await c.env.FILES.get(row.preview_key);
    if (!object) fail(404, `the preview of frame ${frame} of job ${jobId} is missing from storage`);
    return new Response(object.body, {
      headers: {
        'content-type': object.httpMetadata?.contentType ?? 'image/jpeg',
        'content-length': String(object.size),
        etag: object.httpEtag,
        // Short: a frame rendered again (requeued) gets a new preview under the same URL.
        'cache-control': 'private, max-age=60',
      },
    });
  });
