/** The render node's side of the protocol: claiming work and reporting on it. */
import { Hono, type Context } from 'hono';
import { getJobSchema, updateTaskStatusSchema, type TaskAssignment, type UpdateTaskStatusResponse } from '../../protocol/schemas.ts';
import type { AppEnv } from '../app-env.ts';
import { fail } from '../errors.ts';
import { executionContext } from '../execution-context.ts';
import { actAsWorker } from '../auth.ts';
import { startPoll } from '../claim-redelivery.ts';
import { sweepUnrecordedFrames } from '../frame-audit.ts';
import { addJobWarnings } from '../db/jobs.ts';
import { releaseTask } from '../db/state-machine.ts';
import { renewLease } from '../db/tasks.ts';
import { claimTask, describeClaim } from '../scheduler.ts';
import { explainLeaseRefusal } from '../task-lease.ts';
import { readJson } from '../validation.ts';
import { readGeneration, waitForWork } from '../work-signal.ts';
import { touchWorker, unknownWorker } from '../workers-registry.ts';
import type { JobProgress } from '../db/state-machine.ts';
import { completeJobIfDone, completeTask, failTask } from '../task-outcomes.ts';

/**
 * A claim whose frames were all uploaded already is closed and the next claim is tried (as is a
 * claim id already used).
 */
const MAX_CLAIMS_PER_REQUEST = 5;

/**
 * After a task of the job ended: queue its stitch or video task when due (and wake the nodes
 * waiting for work), or complete the job and sweep its storage.
 */
async function moveJobOn(c: Context<AppEnv>, jobId: string): Promise<void> {
  await afterEnd(c, jobId, await completeJobIfDone(c.env.DB, jobId, Date.now()));
}

async function afterEnd(c: Context<AppEnv>, jobId: string, progress: JobProgress): Promise<void> {
  if (progress.queuedTask) c.get('wake')();
  if (progress.completed) await sweepCompletedJob(c, jobId);
}

/**
 * Once a job is complete, deletes the frame objects no row names (left by a master stopped
 * between storing an object and recording it), after the answer has gone out.
 */
function sweepCompletedJob(c: Context<AppEnv>, jobId: string): Promise<void> {
  const sweep = sweepUnrecordedFrames(c.env.DB, c.env.FILES, jobId).then(
    () => {},
    (err) => console.error(`sweeping the frames of job ${jobId}:`, err),
  );
  const ctx = executionContext(c);
  if (!ctx) return sweep; // nothing can run after the answer: finish it first
  ctx.waitUntil(sweep);
  return Promise.resolve();
}

export const taskRoutes = new Hono<AppEnv>()
  .post('/get_job', async (c) => {
    const config = c.get('config');
    const { worker_id: workerId, wait_ms: waitMs = 0, claim_id: claimId } = await readJson(c, getJobSchema, config.maxJsonBytes);
    actAsWorker(c, workerId);
    const deadline = Date.now() + waitMs;
    const poll = startPoll(workerId);
    // No job ends in a claim unless a lease ran out on its last attempt, or a task is closed below.
    c.set('noJobFinished', true);
    // A long poll reads the wake-up generation before its first claim, so that work made
    // claimable after the claim looked wakes the wait that follows (edge/work-signal.ts).
    let generation = waitMs > 0 ? await readGeneration(c.env) : null;
    try {
      for (;;) {
        // A newer request from this node means this one was abandoned: claim nothing for it.
        if (!poll.isNewest() || c.req.raw.signal.aborted) return c.body(null, 204);
        for (let i = 0, leaseId = claimId; i < MAX_CLAIMS_PER_REQUEST; i++) {
          const result = await claimTask(c.env.DB, {
            workerId,
            now: Date.now(),
            leaseMs: config.leaseMs,
            targetChunkMs: config.targetChunkMs,
            maxChunkFrames: config.maxChunkFrames,
            // The node's claim id becomes the lease id, unless a task already had it (then a retry
            // whose answer was lost gets that claim again, see claim-redelivery.ts).
            leaseId,
          });
          leaseId = undefined;
          if (result.jobsEnded) c.set('noJobFinished', false);
          if (result.outcome === 'unknown_worker') fail(404, `no worker with id ${workerId}: register with POST /register_worker first`);
          if (result.outcome === 'claim_id_used') continue;
          // A drained or disabled node waits like one without work: enabling it wakes it.
          if (result.outcome === 'none' || result.outcome === 'disabled') break;
          const assignment: TaskAssignment = describeClaim(result.claimed, config.leaseMs);
          if (assignment.frames.length > 0) return c.json(assignment, 200);
          // Every frame of this range was uploaded by a node that died before reporting: close it.
          await completeTask(c.env.DB, assignment.task_id, workerId, assignment.lease_id, Date.now()).catch((err) => {
            console.warn(`closing fully uploaded task ${assignment.task_id}:`, err);
          });
          c.set('noJobFinished', false);
          await moveJobOn(c, assignment.job_id);
        }
        const left = deadline - Date.now();
        if (left <= 0) return c.body(null, 204);
        // Wait on the wake-up object, not on D1: no query until something makes work claimable.
        const next = await waitForWork(c.env, generation, left, { signal: c.req.raw.signal, stillWanted: poll.isNewest });
        // Not woken (wait_ms ran out, the client left, or a newer poll took over): no work came,
        // and the node asks again. Work that appeared unannounced (an expired lease before the
        // cron sweep found it) is claimed by that next poll.
        if (next !== null && next === generation) return c.body(null, 204);
        generation = next;
      }
    } finally {
      poll.end();
    }
  })
  .post('/update_task_status', async (c) => {
    const config = c.get('config');
    const body = await readJson(c, updateTaskStatusSchema, config.maxJsonBytes);
    actAsWorker(c, body.worker_id);
    const db = c.env.DB;
    const now = Date.now();
    const lease = { taskId: body.task_id, leaseId: body.lease_id, workerId: body.worker_id };
    // Renewals and completions mark the node as seen in their own batch; the rest first.
    if (body.status !== 'running' && body.status !== 'completed') await touchWorker(db, body.worker_id, now, config.leaseMs);
    // Missing textures and libraries the node found; kept only while its lease is current.
    if (body.warnings?.length) await addJobWarnings(db, lease, body.warnings, now);

    let response: UpdateTaskStatusResponse;
    // The job of a task that ended, to be moved on once the answer is known.
    let ended: string | null = null;
    switch (body.status) {
      case 'running': {
        c.set('noJobFinished', true);
        // Renewed while the lease is the task's, even past its expiry: a holder back from a
        // dropped link keeps its work unless another node took the task meanwhile (then the lease
        // id differs: 409, and the node stops Blender). See db/state-machine.ts.
        const { worker, renewed: row } = await renewLease(
          db,
          lease,
          {
            leaseExpiresAt: now + config.leaseMs,
            message: body.message ?? null,
            currentFrame: body.current_frame ?? null,
            peakMemMb: body.peak_mem_mb === undefined ? null : Math.round(body.peak_mem_mb),
          },
          now,
          config.leaseMs,
        );
        if (!worker) unknownWorker(body.worker_id);
        if (!row) await explainLeaseRefusal(db, body.task_id, body.worker_id, body.lease_id);
        response = {
          task_id: body.task_id,
          status: 'running',
          lease_expires_at: new Date(row!.lease_expires_at).toISOString(),
          abort: row!.job_status === 'canceled' || row!.job_status === 'failed',
        };
        break;
      }
      case 'completed': {
        const done = await completeTask(db, body.task_id, body.worker_id, body.lease_id, now, body.message, { leaseMs: config.leaseMs });
        await afterEnd(c, done.jobId, done.progress);
        // A completed task ends its job or nothing: only then is a webhook due.
        if (!done.progress.completed) c.set('noJobFinished', true);
        response = { task_id: body.task_id, status: 'completed', lease_expires_at: null, abort: false };
        break;
      }
      case 'failed': {
        const { status, jobId } = await failTask(db, {
          taskId: body.task_id,
          workerId: body.worker_id,
          leaseId: body.lease_id,
          now,
          message: body.message ?? 'the node reported a failure without a message',
          reason: body.failure_reason ?? 'unknown',
          logTail: body.log_tail ?? null,
        });
        ended = jobId;
        c.get('wake')();
        response = { task_id: body.task_id, status, lease_expires_at: null, abort: false };
        break;
      }
      case 'released': {
        // A node shutting down hands its task back; a graceful stop does not use up an attempt,
        // and ends a run of node losses (db/state-machine.ts).
        const jobId = await releaseTask(db, lease, now, body.message ?? 'released by the node');
        if (!jobId) await explainLeaseRefusal(db, body.task_id, body.worker_id, body.lease_id);
        ended = jobId!;
        c.get('wake')();
        response = { task_id: body.task_id, status: 'queued', lease_expires_at: null, abort: false };
        break;
      }
    }
    if (ended) await moveJobOn(c, ended);
    return c.json(response);
  });
