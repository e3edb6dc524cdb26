/**
 * What tile, stitch and video tasks exchange with the master beside frames: a tile task uploads
 * its tile and a video task its MP4 (`PUT /tasks/{id}/output`); a stitch task downloads the
 * tiles and a video task the frames (`GET /tasks/{id}/inputs/{n}`). Both are fenced by the
 * task's lease, so a node only ever reads what the task it holds needs. The finished preview is
 * `GET /jobs/{id}/video`.
 */
import { Hono, type Context } from 'hono';
import { z } from 'zod';
import { HEADER_LEASE_ID, HEADER_SHA256, HEADER_WORKER_ID, TASK_OUTPUT_TYPES } from '../../protocol/schemas.ts';
import type { AppEnv } from '../app-env.ts';
import { actAsWorker } from '../auth.ts';
import { fail } from '../errors.ts';
import { storedFrameObject } from '../db/frames.ts';
import { loadTask, recordTaskOutput, storedTile, videoOutputKey } from '../db/tasks.ts';
import { digestObject, hex } from '../frame-store.ts';
import { objectResponse } from '../object-response.ts';
import { failIfCutShort, watchBody } from '../request-body.ts';
import { taskOutputKey } from '../storage-keys.ts';
import { assertLease, assertTaskFrame } from '../task-lease.ts';
import { assertBodySize, contentLength, parseOr400, requireId } from '../validation.ts';
import { requireJobRow } from '../job-status.ts';

const leaseHeadersSchema = z.object({
  worker_id: z.string().regex(/^[0-9a-f-]{36}$/, { message: `the ${HEADER_WORKER_ID} header is missing or not a valid id` }),
  lease_id: z.string().regex(/^[0-9a-f-]{36}$/, { message: `the ${HEADER_LEASE_ID} header is missing or not a valid id` }),
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/, { message: `the ${HEADER_SHA256} header must be a hex SHA-256` })
    .optional(),
});

const inputNumberSchema = z.coerce
  .number({ error: 'the input number must be a number' })
  .refine((n) => Number.isInteger(n) && n >= 0, { message: 'the input number must be a whole number from 0' });

/** The lease headers of a node's request about a task, checked against the running task. */
async function heldTask(c: Context<AppEnv>, taskId: string) {
  const headers = parseOr400(leaseHeadersSchema, {
    worker_id: c.req.header(HEADER_WORKER_ID),
    lease_id: c.req.header(HEADER_LEASE_ID),
    sha256: c.req.header(HEADER_SHA256)?.toLowerCase(),
  });
  actAsWorker(c, headers.worker_id);
  c.set('noJobFinished', true); // an upload ends no job
  const task = assertLease(await loadTask(c.env.DB, taskId), taskId, headers.worker_id, headers.lease_id, true);
  return { ...headers, task };
}

export const taskOutputRoutes = new Hono<AppEnv>()
  .put('/tasks/:task_id/output', async (c) => {
    const config = c.get('config');
    const taskId = requireId(c.req.param('task_id'), 'task_id');
    const { worker_id: workerId, lease_id: leaseId, sha256, task } = await heldTask(c, taskId);
    if (task.kind !== 'tile' && task.kind !== 'video') {
      fail(409, `task ${taskId} is a ${task.kind} task: it uploads frames (PUT /tasks/${taskId}/frames/{frame}), not an output`);
    }
    const contentType = TASK_OUTPUT_TYPES[task.kind];
    if ((c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase() !== contentType) {
      fail(415, `a ${task.kind} task's output must be sent as Content-Type: ${contentType}`);
    }
    const length = contentLength(c);
    if (length === null) fail(411, 'the output upload needs a Content-Length header');
    if (length === 0) fail(400, 'the upload is empty');
    assertBodySize(c, config.maxUploadBytes, 'the upload', 'MAX_UPLOAD_BYTES');

    const key = taskOutputKey(task.job_id, taskId, task.kind, leaseId);
    const body = watchBody(c.req.raw.body!, length);
    let stored: R2Object | null;
    try {
      stored = await c.env.FILES.put(key, body.stream, { httpMetadata: { contentType }, ...(sha256 ? { sha256 } : {}) });
    } catch (err) {
      if (sha256 && /checksum|sha-?256|digest/i.test(String(err))) {
        fail(400, `the uploaded bytes do not match the SHA-256 the node sent (${sha256}): send it again`);
      }
      failIfCutShort(err, body, 'the output');
      throw err;
    }
    if (!stored) fail(500, 'R2 did not store the output');
    const digest = sha256 ?? (stored.checksums.sha256 ? hex(stored.checksums.sha256) : await digestObject(c.env.FILES, key));
    const recorded = await recordTaskOutput(c.env.DB, { taskId, leaseId, workerId }, { key, size: stored.size, sha256: digest }, Date.now());
    if (!recorded) {
      await c.env.FILES.delete(key).catch(() => {});
      fail(409, `lease ${leaseId} of task ${taskId} ended while its output was uploading; it was not recorded`);
    }
    return c.json({ task_id: taskId, kind: task.kind, size: stored.size, sha256: digest }, 201);
  })
  // A stitch task's input n is tile n of its job; a video task's input n is frame n.
  .get('/tasks/:task_id/inputs/:n', async (c) => {
    const taskId = requireId(c.req.param('task_id'), 'task_id');
    const n = parseOr400(inputNumberSchema, c.req.param('n'));
    const { task } = await heldTask(c, taskId);
    let source: { key: string; contentType: string } | undefined;
    if (task.kind === 'stitch') {
      source = await storedTile(c.env.DB, task.job_id, n);
      if (!source) fail(404, `tile ${n} of job ${task.job_id} is not stored`);
    } else if (task.kind === 'video') {
      assertTaskFrame(task, n);
      source = await storedFrameObject(c.env.DB, task.job_id, n);
      if (!source) fail(404, `frame ${n} of job ${task.job_id} is not stored`);
    } else {
      fail(409, `task ${taskId} is a ${task.kind} task: it has no inputs to download`);
    }
    const object = await c.env.FILES.get(source.key);
    if (!object) fail(404, `input ${n} of task ${taskId} is missing from storage`);
    return new Response(object.body, { headers: { 'content-type': source.contentType, 'content-length': String(object.size) } });
  })
  .get('/jobs/:job_id/video', async (c) => {
    const jobId = requireId(c.req.param('job_id'), 'job_id');
    const job = await requireJobRow(c.env.DB, jobId);
    const video = await videoOutputKey(c.env.DB, jobId);
    if (!video) {
      fail(404, job.preview_video ? `the preview video of job ${jobId} is not made yet` : `job ${jobId} did not ask for a preview video (preview_video)`);
    }
    const fileName = `${job.name.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80) || 'preview'}.mp4`;
    return objectResponse(c, c.env.FILES, video, fileName, { contentType: 'video/mp4' });
  });
