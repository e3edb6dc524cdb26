/**
 * The job and task state machine: every statement that moves a job or a task from one status to
 * another, each rule written once and run by whoever triggers it (claims, node reports, the
 * control routes, the cron sweeps).
 *
 * Jobs: queued → running (first claim) → completed (every frame stored, its preview video made or
 * given up) or failed (a task's attempts or node losses ran out); paused and canceled by a user,
 * resumed to queued/running; requeued from failed; deleted (then removed by the cron).
 * Tasks: queued → running (leased) → completed, or back to queued (failed with attempts left,
 * released, handed back), or failed (attempts or node losses ran out).
 *
 * Status names come from protocol/schemas.ts (JOB_STATUSES, TASK_STATUSES): the groups below are
 * checked against them by the compiler, and go into SQL through `names`/`name`.
 */
import { sql, type SQL } from 'drizzle-orm';
import type { JobStatus, TaskKind, TaskStatus } from '../../protocol/schemas.ts';
import { framesListedSql, storedTaskFramesSql, taskFrameCountSql, taskFramesLabelSql } from '../frame-ranges.ts';
import { all, get, name, names, openDb, run, type Db } from './client.ts';
import { touchStatements } from './workers.ts';

/** A job being deleted: 404 everywhere while the cron removes its rows and objects (job-deletion.ts). */
export const DELETED = 'deleted';
export type StoredJobStatus = JobStatus | typeof DELETED;

/** Jobs the scheduler serves: their frames are handed out and their tasks re-leased. */
export const RUNNABLE = ['queued', 'running'] as const satisfies readonly JobStatus[];
/** Jobs that have not ended: served, or paused (a paused job still completes when its last frame arrives). */
const OPEN = ['queued', 'running', 'paused'] as const satisfies readonly JobStatus[];
/** Jobs that ended by themselves: their webhook is due (edge/webhooks.ts). */
export const FINISHED = ['completed', 'failed'] as const satisfies readonly JobStatus[];
/** Jobs a user stopped, that resume serves again. */
const STOPPED = ['paused', 'canceled'] as const satisfies readonly JobStatus[];
/** Jobs whose failed tasks a requeue takes back (a running job may have failed tasks of a lost lease). */
const REQUEUEABLE = ['failed', 'running', 'queued'] as const satisfies readonly JobStatus[];
/** Tasks still to be done: waiting for a node, or leased. */
const UNFINISHED_TASKS = ['queued', 'running'] as const satisfies readonly TaskStatus[];
/** Tasks whose result is a file of their own rather than frames. */
const OUTPUT_KINDS = ['tile', 'video'] as const satisfies readonly TaskKind[];

export interface LeaseRef {
  taskId: string;
  workerId: string;
  leaseId: string;
}

/** The task `tasks` is the one `lease` names, and the lease is still its own: what fences every report of a node. */
export const leaseHeld = (lease: LeaseRef): SQL =>
  sql`id = ${lease.taskId} AND lease_id = ${lease.leaseId} AND worker_id = ${lease.workerId} AND status = ${name('running' satisfies TaskStatus)}`;

/** A status or kind as an SQL constant, checked against protocol/'s names by the compiler. */
export const jobState = (s: StoredJobStatus): SQL => name(s);
export const taskState = (s: TaskStatus): SQL => name(s);
export const taskKind = (k: TaskKind): SQL => name(k);

/** `alias.status` is one of `statuses`. */
export const statusIn = (alias: string, statuses: readonly string[]): SQL => sql`${sql.raw(alias)}.status IN ${names(statuses)}`;
/** Job `alias` is not being deleted. */
export const LIVE = (alias: string): SQL => sql`${sql.raw(alias)}.status <> ${name(DELETED)}`;

/** A re-leased or started job: a job that never had a frame claimed is queued, one that had is running. */
const SERVED_AGAIN = sql`CASE WHEN started_at IS NULL THEN ${jobState('queued')} ELSE ${jobState('running')} END`;

/** A leased task going back to the queue without using an attempt (it was not the render's fault). */
const NO_ATTEMPT_USED = sql`attempts = MAX(0, attempts - 1)`;

/** Why a job that asked for a preview video completes without one: a warning, not a failure. */
const videoWarning = (why: SQL) => sql`json_insert(warnings, '$[#]', 'the preview video could not be made: ' || ${why})`;

/**
 * A task failed for good (its attempts, or its node losses, ran out): its job fails with `error`;
 * but a preview video's task fails no job, every frame being stored by then: its job gets a
 * warning, and completes now when `videoCompletes` (when no later statement completes it).
 * `jobsWhere(kindTest)` picks the jobs to end, `kindTest` testing the failed task's kind; a job is
 * failed only if `failsOnlyIf` too.
 */
function endJobsOfFailedTask(
  db: Db,
  opts: { now: number; jobsWhere: (kindTest: SQL) => SQL; failsOnlyIf?: SQL; error: SQL; why: SQL; videoCompletes: boolean },
) {
  const { now } = opts;
  const complete = opts.videoCompletes ? sql`status = ${jobState('completed')}, finished_at = ${now}, ` : sql``;
  return [
    run(
      db,
      sql`UPDATE jobs SET status = ${jobState('failed')}, finished_at = ${now}, updated_at = ${now}, error = ${opts.error}
                WHERE ${opts.jobsWhere(sql`<> ${taskKind('video')}`)}${opts.failsOnlyIf ? sql` AND ${opts.failsOnlyIf}` : sql``}`,
    ),
    run(
      db,
      sql`UPDATE jobs SET ${complete}updated_at = ${now}, warnings = ${videoWarning(opts.why)}
                WHERE ${opts.jobsWhere(sql`= ${taskKind('video')}`)}`,
    ),
  ] as const;
}

// ---- Completion: a job moves on as its tasks end ----------------------------------------------

/** Every frame of the job is stored (of a frame list, every listed frame). */
const FRAMES_DONE = sql.raw(`completed_frames >= ${framesListedSql('jobs', 'jobs.start_frame', 'jobs.end_frame')}`);

export interface JobProgress {
  /** The job is completed now (by this call or before). */
  completed: boolean;
  /** A stitch or video task was queued: waiting nodes should be woken. */
  queuedTask: boolean;
}

/** Which job to move on: by its id, or as the job of a task. */
type JobRef = { jobId: string } | { taskId: string };

/**
 * The statements that move a job on after its tasks changed: a split still gets its stitch task
 * once every tile is in; a job that asked for a preview video gets its video task once every
 * frame is stored; and the job is completed once every frame is stored and its video, if any,
 * was made (or given up on: a preview never fails a job). Tasks still open in a completed job
 * are closed: a node that died after uploading its last frame never reports, and its task must
 * not stay "running" in a finished job. Read the outcome with `jobProgress`.
 */
function progressStatements(db: Db, ref: JobRef, now: number) {
  const jobId = () => ('jobId' in ref ? sql`${ref.jobId}` : sql`(SELECT job_id FROM tasks WHERE id = ${ref.taskId})`);
  const open = statusIn('jobs', OPEN);
  return [
    run(
      db,
      sql`INSERT INTO tasks (id, job_id, start_frame, end_frame, status, attempts, created_at, updated_at, kind)
                SELECT ${crypto.randomUUID()}, id, start_frame, start_frame, ${taskState('queued')}, 0, ${now}, ${now}, ${taskKind('stitch')} FROM jobs
                WHERE id = ${jobId()} AND tiles IS NOT NULL AND ${open} AND completed_frames = 0
                  AND NOT EXISTS (SELECT 1 FROM tasks WHERE job_id = ${jobId()} AND kind = ${taskKind('stitch')})
                  AND (SELECT COUNT(*) FROM tasks WHERE job_id = ${jobId()} AND kind = ${taskKind('tile')} AND status = ${taskState('completed')}) >= tiles`,
    ),
    run(
      db,
      sql`INSERT INTO tasks (id, job_id, start_frame, end_frame, status, attempts, created_at, updated_at, kind)
                SELECT ${crypto.randomUUID()}, id, start_frame, end_frame, ${taskState('queued')}, 0, ${now}, ${now}, ${taskKind('video')} FROM jobs
                WHERE id = ${jobId()} AND preview_video = 1 AND ${open} AND ${FRAMES_DONE}
                  AND NOT EXISTS (SELECT 1 FROM tasks WHERE job_id = ${jobId()} AND kind = ${taskKind('video')})`,
    ),
    run(
      db,
      sql`UPDATE jobs SET status = ${jobState('completed')}, finished_at = ${now}, updated_at = ${now}
                WHERE id = ${jobId()} AND ${open} AND ${FRAMES_DONE}
                  AND (preview_video = 0 OR EXISTS (SELECT 1 FROM tasks v WHERE v.job_id = jobs.id AND v.kind = ${taskKind('video')}
                    AND ${statusIn('v', ['completed', 'failed'] satisfies TaskStatus[])}))`,
    ),
    run(
      db,
      sql`UPDATE tasks SET status = ${taskState('completed')}, lease_expires_at = NULL, updated_at = ${now},
                  message = 'closed with the job: every frame was stored'
                WHERE job_id = ${jobId()} AND ${statusIn('tasks', UNFINISHED_TASKS)}
                  AND (SELECT status FROM jobs WHERE id = ${jobId()}) = ${jobState('completed')}`,
    ),
    get<{ status: StoredJobStatus }>(db, sql`SELECT status FROM jobs WHERE id = ${jobId()}`),
  ] as const;
}

type ProgressResults = readonly [D1Result, D1Result, D1Result, D1Result, { status: StoredJobStatus } | undefined];

/** What `progressStatements` did, from their results. */
function jobProgress([stitch, video, , , current]: ProgressResults): JobProgress {
  return {
    completed: current?.status === 'completed',
    queuedTask: (stitch.meta.changes ?? 0) + (video.meta.changes ?? 0) > 0,
  };
}

/** Moves a job on (progressStatements), in one batch. */
export async function moveJobOn(d1: D1Database, jobId: string, now: number): Promise<JobProgress> {
  const db = openDb(d1);
  return jobProgress(await db.batch(progressStatements(db, { jobId }, now)));
}

// ---- Leases that ran out ----------------------------------------------------------------------
//
// A lease that runs out is a node lost (it died, restarted, or its link dropped), not a render
// that failed: the task goes back to the farm without using one of the job's attempts. Nothing
// changes when the lease runs out: the task stays `running`, so its holder, should it come back
// before anyone else took the task, renews the lease and keeps its work (routes/tasks.ts). The
// claim re-leases a `running` task whose lease has run out just as it does a `queued` one, and
// counts the loss (RELEASE_COUNTS) instead of an attempt. A restarted node's tasks are handed back
// by making their leases run out now (handBackRestartedNode), so they follow this rule too.
//
// Only a task lost `max_node_losses` times in a row fails, and its job with it (endJobsOfFailedTask):
// nodes that keep disappearing while rendering the same frames point at a .blend that kills
// machines (out of memory, a driver crash). A job that is paused keeps its tasks as they are until
// it is resumed, when the next claim applies the rule: a paused job never strands a task that
// nobody may take. Run by every claim (claims.ts) and by the cron (lease-expiry.ts), so that a
// farm whose nodes all died still fails those jobs without waiting for a node to ask for work.

/**
 * The task `t` (of job `job`) lost its node once more than its job allows: its lease ran out, and
 * it was lost `max_node_losses - 1` times in a row before.
 */
const lostTooOften = (now: number, job: string) =>
  sql`t.status = ${taskState('running')} AND t.lease_expires_at < ${now} AND t.node_losses + 1 >= ${sql.raw(job)}.max_node_losses`;

/**
 * How a claim counts what ended the task's previous lease, as the SET of its re-lease (the task's
 * old values): after a lease that ran out (the task is still `running`) a node loss in a row, and
 * no attempt; after a queued task's (released, failed, new) an attempt, and the losses are as the
 * lease's end left them (a failure and a release reset them).
 */
export const RELEASE_COUNTS = sql`attempts = attempts + CASE WHEN status = ${taskState('running')} THEN 0 ELSE 1 END,
  node_losses = node_losses + CASE WHEN status = ${taskState('running')} THEN 1 ELSE 0 END`;

/**
 * The statements that end the tasks (and jobs) that lost their node too often, in the order they
 * must run: the jobs first (they find the tasks by their state before it changes), then the
 * tasks, once their job is no longer served (ended above or before; a paused job's wait).
 */
export function lostNodeStatements(db: Db, now: number) {
  return [
    ...endJobsOfFailedTask(db, {
      now,
      jobsWhere: (kindTest) =>
        sql`${statusIn('jobs', RUNNABLE)} AND EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = jobs.id AND ${lostTooOften(now, 'jobs')} AND t.kind ${kindTest})`,
      error: sql`COALESCE(error, 'nodes kept disappearing while rendering ' || (SELECT ${sql.raw(taskFramesLabelSql('t'))}
        || ': their node was lost ' || (t.node_losses + 1) || ' times in a row (max_node_losses ' || jobs.max_node_losses
        || '); the .blend may exhaust the memory of, or crash, the machines that render it' FROM tasks t
        WHERE t.job_id = jobs.id AND ${lostTooOften(now, 'jobs')} LIMIT 1))`,
      why: sql`'the nodes making it kept disappearing'`,
      videoCompletes: true,
    }),
    run(
      db,
      sql`UPDATE tasks SET status = ${taskState('failed')}, failure_reason = 'lease_expired', updated_at = ${now},
                  message = 'its node was lost ' || (node_losses + 1) || ' times in a row (the lease ran out or the node restarted)'
                WHERE id IN (SELECT t.id FROM tasks t JOIN jobs j ON j.id = t.job_id
                  WHERE ${lostTooOften(now, 'j')} AND j.status NOT IN ${names(RUNNABLE)} AND j.status <> ${jobState('paused')})`,
    ),
  ] as const;
}

/** How many jobs `lostNodeStatements` ended, from their results. */
export const jobsEndedBy = ([failed, completed]: readonly [D1Result, D1Result, D1Result]): number => (failed.meta.changes ?? 0) + (completed.meta.changes ?? 0);

/**
 * The cron's side of the rule: applies it, and says whether a lease ran out since `expiredSince`
 * on a task of a job still served (that task is claimable now, and no request said so). The
 * tasks_expiry index (status, lease_expires_at) finds those among the running tasks.
 */
export async function sweepLostNodes(
  d1: D1Database,
  now: number,
  expiredSince: number,
): Promise<{ jobsEnded: number; tasksFailed: number; claimable: boolean }> {
  const db = openDb(d1);
  const [failed, completed, tasksFailed, claimable] = await db.batch([
    ...lostNodeStatements(db, now),
    get(
      db,
      sql`SELECT 1 AS claimable FROM tasks t JOIN jobs j ON j.id = t.job_id
                WHERE t.status = ${taskState('running')} AND t.lease_expires_at < ${now} AND t.lease_expires_at >= ${expiredSince}
                  AND ${statusIn('j', RUNNABLE)} LIMIT 1`,
    ),
  ]);
  return { jobsEnded: jobsEndedBy([failed, completed, tasksFailed]), tasksFailed: tasksFailed.meta.changes ?? 0, claimable: claimable !== undefined };
}

/**
 * A known node came back with a new boot id (its process restarted, see protocol
 * registerWorkerSchema): the leases its earlier life held run out now, so the claims hand their
 * tasks out at once under the rule above (a node loss, no attempt; frames already uploaded stay),
 * and the new boot id is kept. A registration without a boot id (the seed's curl) hands nothing back.
 * @returns how many tasks were handed back
 */
export async function handBackRestartedNode(d1: D1Database, workerId: string, bootId: string, now: number): Promise<number> {
  const db = openDb(d1);
  const [handedBack] = await db.batch([
    all(
      db,
      sql`UPDATE tasks SET lease_expires_at = ${now} - 1, updated_at = ${now}, message = 'handed back: its node restarted'
                WHERE worker_id = ${workerId} AND status = ${taskState('running')} AND lease_expires_at >= ${now}
                  AND EXISTS (SELECT 1 FROM workers WHERE id = ${workerId} AND boot_id IS NOT ${bootId})
                RETURNING id`,
    ),
    run(db, sql`UPDATE workers SET boot_id = ${bootId} WHERE id = ${workerId}`),
  ]);
  return handedBack.length;
}

// ---- A node's failure report -------------------------------------------------------------------

export interface FailureReport {
  taskId: string;
  workerId: string;
  leaseId: string;
  now: number;
  message: string;
  reason: string;
  logTail: string | null;
}

/**
 * A failed attempt, as one batch. The task goes back to the queue while attempts remain; on the
 * last one it fails, and so does its job (endJobsOfFailedTask), with the reason and where to read
 * the log. The node's failures on this job count towards its blocklisting for the job. A failure
 * ends a run of node losses (lease expiry).
 *
 * Applied once per lease: the task records the lease whose failure it applied (`failed_lease`),
 * and the counters are bumped only by the batch whose task UPDATE applied it (`failure_uncounted`,
 * cleared by the batch's last statement). The same report again (a node retrying a report whose
 * answer was lost, or the group commit running the batch again after an error whose outcome it
 * could not know, see batch-together.ts) counts nothing. The first statement returns the task.
 */
function failureStatements(db: Db, r: FailureReport) {
  const firstLine = r.message.split('\n')[0]!.slice(0, 500);
  // The task's failure applied by this batch and not counted yet.
  const uncounted = sql`SELECT 1 FROM tasks WHERE id = ${r.taskId} AND failed_lease = ${r.leaseId} AND failure_uncounted = 1`;
  const lastAttempt = sql`attempts >= (SELECT max_attempts FROM jobs WHERE jobs.id = tasks.job_id)`;
  return [
    all<{ status: 'queued' | 'failed'; job_id: string; kind: TaskKind }>(
      db,
      sql`UPDATE tasks SET
            status = CASE WHEN ${lastAttempt} THEN ${taskState('failed')} ELSE ${taskState('queued')} END,
            lease_id = CASE WHEN ${lastAttempt} THEN lease_id ELSE NULL END,
            lease_expires_at = NULL, failure_reason = ${r.reason}, message = ${r.message}, log_tail = ${r.logTail}, updated_at = ${r.now},
            node_losses = 0, failed_lease = ${r.leaseId}, failure_uncounted = 1
          WHERE ${leaseHeld(r)}
          RETURNING status, job_id, kind`,
    ),
    run(
      db,
      sql`INSERT INTO job_blocklist (job_id, worker_id, failures, last_reason, updated_at)
                SELECT job_id, ${r.workerId}, 1, ${r.reason}, ${r.now} FROM tasks WHERE EXISTS (${uncounted}) AND id = ${r.taskId}
                ON CONFLICT (job_id, worker_id) DO UPDATE SET failures = failures + 1, last_reason = excluded.last_reason,
                  updated_at = excluded.updated_at`,
    ),
    run(db, sql`UPDATE workers SET failures = failures + 1 WHERE id = ${r.workerId} AND EXISTS (${uncounted})`),
    ...endJobsOfFailedTask(db, {
      now: r.now,
      jobsWhere: (kindTest) => sql`id = (SELECT job_id FROM tasks WHERE id = ${r.taskId} AND status = ${taskState('failed')} AND kind ${kindTest}
        AND EXISTS (${uncounted}))`,
      failsOnlyIf: statusIn('jobs', OPEN),
      error: sql`(SELECT ${sql.raw(taskFramesLabelSql('t'))} || ' failed after ' || t.attempts
        || ' attempt(s): ' || ${firstLine} || ' (log: /jobs/' || t.job_id || '/tasks/' || t.id || '/log)' FROM tasks t WHERE t.id = ${r.taskId})`,
      why: sql`${firstLine}`,
      videoCompletes: false,
    }),
    // Counted: the same batch run again finds nothing to count.
    run(db, sql`UPDATE tasks SET failure_uncounted = 0 WHERE id = ${r.taskId} AND failure_uncounted = 1`),
  ] as const;
}

/** Applies a node's failure report (failureStatements); the task's new status, or undefined when the lease is not the task's. */
export async function failLeasedTask(d1: D1Database, report: FailureReport): Promise<{ status: 'queued' | 'failed'; job_id: string } | undefined> {
  const db = openDb(d1);
  const [updated] = await db.batch(failureStatements(db, report));
  return updated[0];
}

// ---- A node's completion report ----------------------------------------------------------------

/** What a task must have delivered to be completed: its frames (taskFrames), or for a tile or video, its output. */
const DELIVERED = sql`CASE WHEN kind IN ${names(OUTPUT_KINDS)} THEN output_key IS NOT NULL
  ELSE (SELECT COUNT(*) FROM (${sql.raw(storedTaskFramesSql('tasks', '1'))}))
    = (SELECT ${sql.raw(taskFrameCountSql('tasks', 'jt'))} FROM jobs jt WHERE jt.id = tasks.job_id) END`;

/**
 * Completes a leased task, only once it delivered (DELIVERED), so that a task can never be
 * "done" with a frame lost, and moves its job on (progressStatements). The first statement
 * returns the task's job id.
 */
function completionStatements(db: Db, lease: LeaseRef, now: number, message: string | null) {
  return [
    all<{ job_id: string }>(
      db,
      sql`UPDATE tasks SET status = ${taskState('completed')}, updated_at = ${now}, message = COALESCE(${message}, message), lease_expires_at = NULL
          WHERE ${leaseHeld(lease)}
            AND ${DELIVERED}
          RETURNING job_id`,
    ),
    ...progressStatements(db, { taskId: lease.taskId }, now),
  ] as const;
}

/**
 * Completes a leased task and moves its job on (completionStatements), in one
 * batch that first marks the node as seen when `touch` says so. Answers the job's id, or
 * undefined when the task was not completed (not delivered, or the lease is not the task's).
 */
export async function completeLeasedTask(
  d1: D1Database,
  lease: LeaseRef,
  now: number,
  message: string | null,
  touch?: { leaseMs: number },
): Promise<{ jobId: string | undefined; progress: JobProgress }> {
  const db = openDb(d1);
  if (!touch) {
    const [completed, ...progress] = await db.batch(completionStatements(db, lease, now, message));
    return { jobId: completed[0]?.job_id, progress: jobProgress(progress) };
  }
  const [, , completed, ...progress] = await db.batch([
    ...touchStatements(db, lease.workerId, now, touch.leaseMs),
    ...completionStatements(db, lease, now, message),
  ]);
  return { jobId: completed[0]?.job_id, progress: jobProgress(progress) };
}

// ---- Tasks handed back -------------------------------------------------------------------------

/**
 * A node shutting down hands its task back: a graceful stop does not use up an attempt, and ends
 * a run of node losses. Returns the task's job id, or undefined when the lease is not the task's.
 */
export async function releaseTask(d1: D1Database, lease: LeaseRef, now: number, message: string): Promise<string | undefined> {
  const row = await get<{ job_id: string }>(
    openDb(d1),
    sql`UPDATE tasks SET status = ${taskState('queued')}, lease_id = NULL, lease_expires_at = NULL, worker_id = NULL,
          ${NO_ATTEMPT_USED}, node_losses = 0, updated_at = ${now}, message = ${message}
        WHERE ${leaseHeld(lease)}
        RETURNING job_id`,
  );
  return row?.job_id;
}

/**
 * Disables a node: no new work, and its leased tasks return to the queue without using an
 * attempt (it is not the task's fault); its next renewal or upload is refused, so it stops Blender.
 * @returns whether the node exists, and the tasks handed back
 */
export async function disableWorker(d1: D1Database, workerId: string, now: number): Promise<{ found: boolean; released: number }> {
  const db = openDb(d1);
  const [updated, released] = await db.batch([
    all<{ id: string }>(db, sql`UPDATE workers SET enabled = 0 WHERE id = ${workerId} RETURNING id`),
    all<{ id: string }>(
      db,
      sql`UPDATE tasks SET status = ${taskState('queued')}, lease_id = NULL, lease_expires_at = NULL, worker_id = NULL,
            ${NO_ATTEMPT_USED}, updated_at = ${now}, message = 'handed back: its node was disabled'
          WHERE worker_id = ${workerId} AND status = ${taskState('running')} RETURNING id`,
    ),
  ]);
  return { found: updated.length > 0, released: released.length };
}

// ---- Job control -------------------------------------------------------------------------------

/** Pauses a queued or running job; whether it changed. */
export async function pauseJob(d1: D1Database, jobId: string, now: number): Promise<boolean> {
  const row = await get(
    openDb(d1),
    sql`UPDATE jobs SET status = ${jobState('paused')}, updated_at = ${now} WHERE id = ${jobId} AND ${statusIn('jobs', RUNNABLE)} RETURNING id`,
  );
  return row !== undefined;
}

/** Serves a paused or canceled job again; whether it changed. The caller moves it on (its last frames may have arrived meanwhile). */
export async function resumeJob(d1: D1Database, jobId: string, now: number): Promise<boolean> {
  const row = await get(
    openDb(d1),
    sql`UPDATE jobs SET status = ${SERVED_AGAIN}, finished_at = NULL, updated_at = ${now}
        WHERE id = ${jobId} AND ${statusIn('jobs', STOPPED)} RETURNING id`,
  );
  return row !== undefined;
}

/**
 * Cancels an open job, in one transaction: it stops being served and its leased tasks go back to
 * the queue (without using an attempt), so a node's next renewal or upload is refused and it
 * stops. Whether it changed.
 */
export async function cancelJob(d1: D1Database, jobId: string, now: number): Promise<boolean> {
  const db = openDb(d1);
  const [changed] = await db.batch([
    all(
      db,
      sql`UPDATE jobs SET status = ${jobState('canceled')}, finished_at = ${now}, updated_at = ${now}
                WHERE id = ${jobId} AND ${statusIn('jobs', OPEN)} RETURNING id`,
    ),
    run(
      db,
      sql`UPDATE tasks SET status = ${taskState('queued')}, lease_expires_at = NULL, ${NO_ATTEMPT_USED}, updated_at = ${now},
                  message = 'canceled while rendering; the node was told to stop'
                WHERE job_id = ${jobId} AND status = ${taskState('running')} AND (SELECT status FROM jobs WHERE id = ${jobId}) = ${jobState('canceled')}`,
    ),
  ]);
  return changed.length > 0;
}

/**
 * Requeues a job's failed tasks, with fresh attempts and an empty blocklist, and serves the job
 * again; its webhook is armed again, to be called when it finishes again (edge/webhooks.ts).
 * @returns how many tasks were requeued
 */
export async function requeueFailed(d1: D1Database, jobId: string, now: number): Promise<number> {
  const db = openDb(d1);
  const [requeued] = await db.batch([
    // Also tasks left running on a lease that ran out while the job was failed: their nodes
    // were told to stop, and an old attempt count must not fail the job again at once.
    all(
      db,
      sql`UPDATE tasks SET status = ${taskState('queued')}, attempts = 0, node_losses = 0, lease_id = NULL, worker_id = NULL, updated_at = ${now}
                WHERE job_id = ${jobId} AND (status = ${taskState('failed')} OR (status = ${taskState('running')} AND lease_expires_at < ${now})) RETURNING id`,
    ),
    run(db, sql`DELETE FROM job_blocklist WHERE job_id = ${jobId}`),
    run(
      db,
      sql`UPDATE jobs SET status = ${SERVED_AGAIN}, error = NULL, finished_at = NULL, updated_at = ${now},
                  webhook_state = CASE WHEN webhook_url IS NULL THEN NULL ELSE 'armed' END
                WHERE id = ${jobId} AND ${statusIn('jobs', REQUEUEABLE)}`,
    ),
  ]);
  return requeued.length;
}

/**
 * Marks a job deleted: it answers 404 at once, no webhook is called for it, and its running
 * tasks go back to the queue, so its nodes are refused like a canceled job's (fencing: a task
 * that is not running takes no renewal, frame, preview, output or report). The input's retention
 * starts now (it is deleted after it only if no other job uses it), and so does that of every file
 * its manifest names. The cron then removes its rows and objects (job-deletion.ts).
 * @returns false when there is no such job, or it was deleted already
 */
export async function markJobDeleted(d1: D1Database, jobId: string, now: number): Promise<boolean> {
  const db = openDb(d1);
  const deleted = name(DELETED);
  const [marked] = await db.batch([
    all(
      db,
      sql`UPDATE jobs SET status = ${deleted}, updated_at = ${now}, webhook_state = NULL, claim_token = NULL
                WHERE id = ${jobId} AND ${LIVE('jobs')} RETURNING id`,
    ),
    run(
      db,
      sql`UPDATE tasks SET status = ${taskState('queued')}, lease_expires_at = NULL, updated_at = ${now}, message = 'the job was deleted'
                WHERE job_id = ${jobId} AND status = ${taskState('running')} AND (SELECT status FROM jobs WHERE id = ${jobId}) = ${deleted}`,
    ),
    run(
      db,
      sql`UPDATE blobs SET last_used_at = ${now} WHERE sha256 IN (SELECT blend_sha256 FROM jobs WHERE id = ${jobId} AND status = ${deleted}
                  UNION SELECT mf.blob_sha256 FROM manifest_files mf JOIN jobs j ON mf.manifest_sha256 = j.blend_sha256
                    WHERE j.id = ${jobId} AND j.status = ${deleted} AND j.input_kind = 'manifest')`,
    ),
  ]);
  return marked.length > 0;
}
