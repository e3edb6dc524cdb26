/**
 * Job control: cancel, pause, resume, change priority or webhook, delete with its files.
 *
 * Each change is one conditional UPDATE (or one batch), so two people pressing buttons at once
 * cannot leave a job half-changed. Asking for the state a job is already in changes nothing and
 * answers 200 with `previous_status` equal to `status`; asking for a change a job's state does not
 * allow (pausing a completed job) answers 409 saying what can be done instead.
 *
 * What each change means for the nodes:
 *  - pause: no new frames are handed out (the scheduler only serves queued and running jobs);
 *    tasks being rendered finish, as in Flamenco, so no work is thrown away;
 *  - cancel: no new frames, and the tasks being rendered go back to the queue at once: the
 *    node's next lease renewal or frame upload gets 409 and the node stops Blender;
 *  - resume: a paused or canceled job is queued again and waiting nodes are woken;
 *  - delete: the job answers 404 at once and its tasks go back to the queue, so its nodes are
 *    refused like a canceled job's; the cron then removes its files and rows (job-deletion.ts).
 */
import { Hono } from 'hono';
import { updateJobSchema, type DeleteJobResponse, type JobControlResponse, type WebhookStatus } from '../../protocol/api.ts';
import type { JobStatus } from '../../protocol/schemas.ts';
import type { AppEnv } from '../app-env.ts';
import { fail } from '../errors.ts';
import { describeJob, requireJobRow } from '../job-status.ts';
import type { JobRow } from '../db/jobs.ts';
import { updateJob, webhookRow } from '../db/jobs.ts';
import { cancelJob, markJobDeleted, pauseJob, resumeJob } from '../db/state-machine.ts';
import { completeJobIfDone } from '../task-outcomes.ts';
import { readJson, requireId } from '../validation.ts';
import { webhookSigning } from '../webhooks.ts';

/** What the user can do instead, for a job whose state does not allow the request. */
function refuse(job: JobRow, what: string): never {
  const id = job.id;
  const hints: Record<JobStatus, string> = {
    queued: '',
    running: '',
    paused: `resume it with POST /jobs/${id}/resume (farm resume ${id})`,
    completed: `its frames are at /jobs/${id}/frames; delete it with DELETE /jobs/${id}`,
    failed: `requeue its failed frames with POST /jobs/${id}/requeue_failed (farm requeue ${id})`,
    canceled: `resume it with POST /jobs/${id}/resume (farm resume ${id}) or delete it with DELETE /jobs/${id}`,
  };
  fail(409, `job ${id} is ${job.status}, so it cannot be ${what}${hints[job.status] ? `: ${hints[job.status]}` : ''}`);
}

async function answer(db: D1Database, jobId: string, previous: JobStatus): Promise<JobControlResponse> {
  const job = await requireJobRow(db, jobId);
  return { ...(await describeJob(db, job)), previous_status: previous };
}

export const jobControlRoutes = new Hono<AppEnv>()
  .post('/jobs/:job_id/pause', async (c) => {
    const jobId = requireId(c.req.param('job_id'), 'job_id');
    const job = await requireJobRow(c.env.DB, jobId);
    const changed = await pauseJob(c.env.DB, jobId, Date.now());
    if (!changed && job.status !== 'paused') refuse(job, 'paused');
    return c.json(await answer(c.env.DB, jobId, job.status));
  })
  .post('/jobs/:job_id/resume', async (c) => {
    const jobId = requireId(c.req.param('job_id'), 'job_id');
    const job = await requireJobRow(c.env.DB, jobId);
    const now = Date.now();
    const changed = await resumeJob(c.env.DB, jobId, now);
    if (!changed && job.status !== 'queued' && job.status !== 'running') refuse(job, 'resumed');
    if (changed) {
      // Frames finished while it was paused may have been its last ones.
      await completeJobIfDone(c.env.DB, jobId, now);
      c.get('wake')();
    }
    return c.json(await answer(c.env.DB, jobId, job.status));
  })
  .post('/jobs/:job_id/cancel', async (c) => {
    const jobId = requireId(c.req.param('job_id'), 'job_id');
    const job = await requireJobRow(c.env.DB, jobId);
    const now = Date.now();
    if (!(await cancelJob(c.env.DB, jobId, now)) && job.status !== 'canceled') refuse(job, 'canceled');
    return c.json(await answer(c.env.DB, jobId, job.status));
  })
  .patch('/jobs/:job_id', async (c) => {
    const jobId = requireId(c.req.param('job_id'), 'job_id');
    const body = await readJson(c, updateJobSchema, c.get('config').maxJsonBytes);
    const job = await requireJobRow(c.env.DB, jobId);
    await updateJob(c.env.DB, jobId, { priority: body.priority, webhookUrl: body.webhook_url }, Date.now());
    // A job that rose in priority may now be the one a waiting node should take.
    if (body.priority !== undefined) c.get('wake')();
    return c.json(await answer(c.env.DB, jobId, job.status));
  })
  .delete('/jobs/:job_id', async (c) => {
    const jobId = requireId(c.req.param('job_id'), 'job_id');
    // Marked in one batch, and 404 from then on; its objects and rows are removed by the cron,
    // a page at a time, since a large job has more than one request may delete (job-deletion.ts).
    if (!(await markJobDeleted(c.env.DB, jobId, Date.now()))) fail(404, `no job with id ${jobId}`);
    // Nothing is deleted by the request itself: deleted_objects stays in the answer for clients
    // of the earlier API, and is 0.
    const body: DeleteJobResponse = { job_id: jobId, deleted: true, deleted_objects: 0 };
    return c.json(body);
  })
  .get('/jobs/:job_id/webhook', async (c) => {
    const jobId = requireId(c.req.param('job_id'), 'job_id');
    const row = await webhookRow(c.env.DB, jobId);
    if (!row) fail(404, `no job with id ${jobId}`);
    const body: WebhookStatus = {
      job_id: jobId,
      webhook_url: row.webhook_url,
      state: row.webhook_state,
      attempts: row.webhook_attempts,
      last_error: row.webhook_last_error,
      delivered_at: row.webhook_delivered_at === null ? null : new Date(row.webhook_delivered_at).toISOString(),
      ...webhookSigning(c.get('config')),
    };
    return c.json(body);
  });
