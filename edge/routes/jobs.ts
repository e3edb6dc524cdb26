/** Reading jobs and their results: status, lists, frames (one by one or as a ZIP), tasks, logs. */
import { Hono } from 'hono';
import type { FrameListItem } from '../../protocol/api.ts';
import { listFramesQuerySchema, listJobsQuerySchema } from '../../protocol/schemas.ts';
import type { AppEnv } from '../app-env.ts';
import { fail } from '../errors.ts';
import { framePage, liveFrame, type FrameRow } from '../db/frames.ts';
import { jobBlocklist, jobPage } from '../db/jobs.ts';
import { requeueFailed } from '../db/state-machine.ts';
import { jobTasks, taskLog } from '../db/tasks.ts';
import { frameUrl } from '../frame-store.ts';
import { describeJob, requireJobRow } from '../job-status.ts';
import { jobInputs } from '../manifest-store.ts';
import { parseOr400, requireId } from '../validation.ts';
import { previewUrl } from './previews.ts';
import { zipStream, type ZipEntry } from '../zip-stream.ts';

const toFrameInfo = (jobId: string, row: FrameRow): FrameListItem => ({
  frame: row.frame,
  size: row.size,
  sha256: row.sha256,
  content_type: row.content_type,
  file_name: row.r2_key.split('/').pop()!,
  url: frameUrl(jobId, row.frame),
  render_ms: row.render_ms,
  worker_id: row.worker_id,
  preview_url: row.preview_key ? previewUrl(jobId, row.frame) : null,
});

const FRAME_PAGE = 500;

/** Every stored frame of a job in order, read from D1 a page at a time. */
async function* framesOf(db: D1Database, jobId: string): AsyncGenerator<FrameRow> {
  let after = -Infinity;
  for (;;) {
    const results = await framePage(db, jobId, Number.isFinite(after) ? after : -2_000_000, FRAME_PAGE);
    yield* results;
    if (results.length < FRAME_PAGE) return;
    after = results[results.length - 1]!.frame;
  }
}

function parseFrameParam(value: string): number {
  if (!/^-?\d{1,7}$/.test(value)) fail(400, 'frame must be a whole number');
  return Number(value);
}

export const jobRoutes = new Hono<AppEnv>()
  .get('/job_status/:job_id', async (c) => {
    const job = await requireJobRow(c.env.DB, requireId(c.req.param('job_id'), 'job_id'));
    return c.json({ ...(await describeJob(c.env.DB, job)), inputs: await jobInputs(c.env.DB, job) });
  })
  .get('/jobs', async (c) => {
    const query = parseOr400(listJobsQuerySchema, c.req.query());
    const limit = query.limit ?? 50;
    // Newest first; the cursor is "created_at:id" of the last job on the previous page.
    let cursorAt = Number.MAX_SAFE_INTEGER;
    let cursorId = '';
    if (query.cursor) {
      const match = /^(\d{1,16}):([0-9a-f-]{36})$/.exec(query.cursor);
      if (!match) fail(400, 'cursor is not one this API returned');
      cursorAt = Number(match[1]);
      cursorId = match[2]!;
    }
    const results = await jobPage(c.env.DB, { createdAt: cursorAt, id: cursorId || 'g' }, query.status ?? null, limit);
    const now = Date.now();
    const jobs = await Promise.all(results.map((job) => describeJob(c.env.DB, job, now)));
    const last = results[results.length - 1];
    return c.json({ jobs, next_cursor: results.length === limit && last ? `${last.created_at}:${last.id}` : null });
  })
  .get('/jobs/:job_id', async (c) => {
    const job = await requireJobRow(c.env.DB, requireId(c.req.param('job_id'), 'job_id'));
    // The file list is only in the answers about one job: a manifest may name thousands of files.
    return c.json({ ...(await describeJob(c.env.DB, job)), inputs: await jobInputs(c.env.DB, job) });
  })
  .get('/jobs/:job_id/frames', async (c) => {
    const jobId = requireId(c.req.param('job_id'), 'job_id');
    const query = parseOr400(listFramesQuerySchema, c.req.query());
    await requireJobRow(c.env.DB, jobId);
    const limit = query.limit ?? 1000;
    const results = await framePage(c.env.DB, jobId, query.after ?? -2_000_000, limit);
    const last = results[results.length - 1];
    return c.json({
      job_id: jobId,
      frames: results.map((row) => toFrameInfo(jobId, row)),
      next_after: results.length === limit && last ? last.frame : null,
    });
  })
  .get('/jobs/:job_id/frames.zip', async (c) => {
    const jobId = requireId(c.req.param('job_id'), 'job_id');
    const job = await requireJobRow(c.env.DB, jobId);
    const bucket = c.env.FILES;
    // Read lazily: the archive asks for the next frame (a D1 page, then its R2 object) only once
    // the one before has been sent.
    async function* entries(): AsyncGenerator<ZipEntry> {
      for await (const row of framesOf(c.env.DB, jobId)) {
        const object = await bucket.get(row.r2_key);
        // Deleted since it was listed (the frame was replaced): left out, not a broken archive.
        if (!object) continue;
        yield { name: row.r2_key.split('/').pop()!, lastModified: new Date(row.created_at), body: object.body };
      }
    }
    const fileName = `${job.name.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80) || 'frames'}.zip`;
    // No Content-Length: predicting it (client-zip's predictLength) needs every name and size
    // before the first byte, a full pass over the job's frames, and frames still arriving or
    // replaced while it streams would make it wrong, which truncates or corrupts the download.
    // The archive goes out chunked instead.
    return new Response(zipStream(entries()), {
      headers: { 'content-type': 'application/zip', 'content-disposition': `attachment; filename="${fileName}"` },
    });
  })
  .get('/jobs/:job_id/frames/:frame', async (c) => {
    const jobId = requireId(c.req.param('job_id'), 'job_id');
    const frame = parseFrameParam(c.req.param('frame'));
    const row = await liveFrame(c.env.DB, jobId, frame);
    if (!row) {
      await requireJobRow(c.env.DB, jobId);
      fail(404, `frame ${frame} of job ${jobId} has not been rendered yet`);
    }
    const object = await c.env.FILES.get(row.r2_key);
    if (!object) fail(404, `frame ${frame} of job ${jobId} is missing from storage`);
    return new Response(object.body, {
      headers: {
        'content-type': row.content_type,
        'content-length': String(object.size),
        etag: object.httpEtag,
        'x-farm-sha256': row.sha256,
        'content-disposition': `inline; filename="${row.r2_key.split('/').pop()}"`,
      },
    });
  })
  .get('/jobs/:job_id/tasks', async (c) => {
    const jobId = requireId(c.req.param('job_id'), 'job_id');
    await requireJobRow(c.env.DB, jobId);
    const results = await jobTasks(c.env.DB, jobId);
    return c.json({
      job_id: jobId,
      tasks: results.map(({ log_key, lease_expires_at, ...task }) => ({
        ...task,
        task_id: task.id,
        lease_expires_at: lease_expires_at === null ? null : new Date(lease_expires_at).toISOString(),
        log_url: log_key ? `/jobs/${jobId}/tasks/${task.id}/log` : null,
      })),
    });
  })
  .get('/jobs/:job_id/tasks/:task_id/log', async (c) => {
    const jobId = requireId(c.req.param('job_id'), 'job_id');
    const taskId = requireId(c.req.param('task_id'), 'task_id');
    const row = await taskLog(c.env.DB, jobId, taskId);
    if (!row) fail(404, `no task ${taskId} in job ${jobId}`);
    const object = row.log_key ? await c.env.FILES.get(row.log_key) : null;
    if (object) return new Response(object.body, { headers: { 'content-type': 'text/plain; charset=utf-8' } });
    if (row.log_tail) return c.text(row.log_tail);
    fail(404, `task ${taskId} has no log yet`);
  })
  .get('/jobs/:job_id/blocklist', async (c) => {
    const jobId = requireId(c.req.param('job_id'), 'job_id');
    const job = await requireJobRow(c.env.DB, jobId);
    const results = await jobBlocklist(c.env.DB, jobId);
    return c.json({
      job_id: jobId,
      max_node_failures: job.max_node_failures,
      nodes: results.map((r) => ({ ...r, blocked: r.failures >= job.max_node_failures, updated_at: new Date(r.updated_at).toISOString() })),
    });
  })
  .post('/jobs/:job_id/requeue_failed', async (c) => {
    const jobId = requireId(c.req.param('job_id'), 'job_id');
    await requireJobRow(c.env.DB, jobId);
    const requeued = await requeueFailed(c.env.DB, jobId, Date.now());
    c.get('wake')();
    const job = await requireJobRow(c.env.DB, jobId);
    return c.json({ job_id: jobId, requeued_tasks: requeued, status: job.status });
  });
