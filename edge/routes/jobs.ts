/** Reading jobs and their results: status, lists, frames (one by one or as a ZIP), tasks, logs. */
import { Hono } from 'hono';
import type { FrameListItem } from '../../protocol/api.ts';
import { listFramesQuerySchema, listJobsQuerySchema } from '../../protocol/schemas.ts';
import type { AppEnv } from '../app-env.ts';
import { fail } from '../errors.ts';
import { frameUrl } from '../frame-store.ts';
import { describeJob, requireJobRow, type JobRow } from '../job-status.ts';
import { jobInputs } from '../manifest-store.ts';
import { parseOr400, requireId } from '../validation.ts';
import { previewUrl } from './previews.ts';
import { zipStream, type ZipEntry } from '../zip-stream.ts';

interface FrameRow {
  frame: number;
  r2_key: string;
  size: number;
  sha256: string;
  content_type: string;
  render_ms: number | null;
  worker_id: string | null;
  preview_key: string | null;
  /** When the frame was stored (ms since epoch): the entry's date in frames.zip. */
  created_at: number;
}

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
    const { results } = await db
      .prepare(`SELECT * FROM frames WHERE job_id = ? AND frame > ? ORDER BY frame LIMIT ?`)
      .bind(jobId, Number.isFinite(after) ? after : -2_000_000, FRAME_PAGE)
      .all<FrameRow>();
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
    const { results } = await c.env.DB.prepare(
      `SELECT * FROM jobs WHERE (created_at < ?1 OR (created_at = ?1 AND id < ?2)) AND (?3 IS NULL OR status = ?3) AND status <> 'deleted'
       ORDER BY created_at DESC, id DESC LIMIT ?4`,
    )
      .bind(cursorAt, cursorId || 'g', query.status ?? null, limit)
      .all<JobRow>();
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
    const { results } = await c.env.DB.prepare(`SELECT * FROM frames WHERE job_id = ? AND frame > ? ORDER BY frame LIMIT ?`)
      .bind(jobId, query.after ?? -2_000_000, limit)
      .all<FrameRow>();
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
    // The frames of a deleted job are gone at once, though the cron may not have removed them yet.
    const row = await c.env.DB.prepare(
      `SELECT * FROM frames WHERE job_id = ?1 AND frame = ?2 AND EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND status <> 'deleted')`,
    )
      .bind(jobId, frame)
      .first<FrameRow>();
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
    const { results } = await c.env.DB.prepare(
      `SELECT id, start_frame, end_frame, frame_step, status, worker_id, attempts, node_losses, message, failure_reason, log_key, current_frame,
         peak_mem_mb, lease_expires_at, created_at, updated_at, kind, tile_index FROM tasks WHERE job_id = ?
       ORDER BY kind = 'video', start_frame, CASE kind WHEN 'tile' THEN 0 WHEN 'render' THEN 1 ELSE 2 END, tile_index LIMIT 5000`,
    )
      .bind(jobId)
      .all<Record<string, unknown> & { id: string; log_key: string | null; lease_expires_at: number | null }>();
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
    const row = await c.env.DB.prepare(
      `SELECT log_key, log_tail FROM tasks WHERE id = ?1 AND job_id = ?2 AND EXISTS (SELECT 1 FROM jobs WHERE id = ?2 AND status <> 'deleted')`,
    )
      .bind(taskId, jobId)
      .first<{ log_key: string | null; log_tail: string | null }>();
    if (!row) fail(404, `no task ${taskId} in job ${jobId}`);
    const object = row.log_key ? await c.env.FILES.get(row.log_key) : null;
    if (object) return new Response(object.body, { headers: { 'content-type': 'text/plain; charset=utf-8' } });
    if (row.log_tail) return c.text(row.log_tail);
    fail(404, `task ${taskId} has no log yet`);
  })
  .get('/jobs/:job_id/blocklist', async (c) => {
    const jobId = requireId(c.req.param('job_id'), 'job_id');
    const job = await requireJobRow(c.env.DB, jobId);
    const { results } = await c.env.DB.prepare(
      `SELECT b.worker_id, w.name, b.failures, b.last_reason, b.updated_at FROM job_blocklist b
       LEFT JOIN workers w ON w.id = b.worker_id WHERE b.job_id = ? ORDER BY b.updated_at DESC`,
    )
      .bind(jobId)
      .all<{ worker_id: string; name: string | null; failures: number; last_reason: string | null; updated_at: number }>();
    return c.json({
      job_id: jobId,
      max_node_failures: job.max_node_failures,
      nodes: results.map((r) => ({ ...r, blocked: r.failures >= job.max_node_failures, updated_at: new Date(r.updated_at).toISOString() })),
    });
  })
  .post('/jobs/:job_id/requeue_failed', async (c) => {
    const jobId = requireId(c.req.param('job_id'), 'job_id');
    await requireJobRow(c.env.DB, jobId);
    const now = Date.now();
    const [requeued] = await c.env.DB.batch([
      c.env.DB.prepare(
        // Also tasks left running on a lease that ran out while the job was failed: their nodes
        // were told to stop, and an old attempt count must not fail the job again at once.
        `UPDATE tasks SET status = 'queued', attempts = 0, node_losses = 0, lease_id = NULL, worker_id = NULL, updated_at = ?1
         WHERE job_id = ?2 AND (status = 'failed' OR (status = 'running' AND lease_expires_at < ?1)) RETURNING id`,
      ).bind(now, jobId),
      c.env.DB.prepare(`DELETE FROM job_blocklist WHERE job_id = ?`).bind(jobId),
      c.env.DB.prepare(
        `UPDATE jobs SET status = CASE WHEN started_at IS NULL THEN 'queued' ELSE 'running' END, error = NULL,
           finished_at = NULL, updated_at = ?1,
           -- its webhook is called again when it finishes again (edge/webhooks.ts)
           webhook_state = CASE WHEN webhook_url IS NULL THEN NULL ELSE 'armed' END
         WHERE id = ?2 AND status IN ('failed', 'running', 'queued')`,
      ).bind(now, jobId),
    ]);
    c.get('wake')();
    const job = await requireJobRow(c.env.DB, jobId);
    return c.json({ job_id: jobId, requeued_tasks: requeued!.results.length, status: job.status });
  });
