/**
 * What happens when a node finishes a task: completion (only once every frame is stored),
 * failure (retried until the job's attempts run out, and counted against the node, once per
 * lease), and the job-level consequences of both. Each outcome is one D1 batch, so it applies whole or not at all.
 */
import { fail } from './errors.ts';
import { framesListedSql, storedTaskFramesSql, taskFrameCountSql, taskFrames, taskFramesLabelSql } from './frame-ranges.ts';
import { assertLease, loadTask } from './task-lease.ts';

/** What a task must have delivered to be completed: its frames (taskFrames), or for a tile or video, its output. */
const DELIVERED = `CASE WHEN kind IN ('tile', 'video') THEN output_key IS NOT NULL
  ELSE (SELECT COUNT(*) FROM (${storedTaskFramesSql('tasks', '1')}))
    = (SELECT ${taskFrameCountSql('tasks', 'jt')} FROM jobs jt WHERE jt.id = tasks.job_id) END`;

const OPEN = `('queued', 'running', 'paused')`;

/** Every frame of the job is stored (of a frame list, every listed frame). */
const FRAMES_DONE = `completed_frames >= ${framesListedSql('jobs', 'jobs.start_frame', 'jobs.end_frame')}`;

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
function progressStatements(db: D1Database, ref: JobRef, now: number): D1PreparedStatement[] {
  // ?2 is the job's id, or the id of a task of it.
  const job = 'jobId' in ref ? '?2' : '(SELECT job_id FROM tasks WHERE id = ?2)';
  const key = 'jobId' in ref ? ref.jobId : ref.taskId;
  return [
    db
      .prepare(
        `INSERT INTO tasks (id, job_id, start_frame, end_frame, status, attempts, created_at, updated_at, kind)
         SELECT ?3, id, start_frame, start_frame, 'queued', 0, ?1, ?1, 'stitch' FROM jobs
         WHERE id = ${job} AND tiles IS NOT NULL AND status IN ${OPEN} AND completed_frames = 0
           AND NOT EXISTS (SELECT 1 FROM tasks WHERE job_id = ${job} AND kind = 'stitch')
           AND (SELECT COUNT(*) FROM tasks WHERE job_id = ${job} AND kind = 'tile' AND status = 'completed') >= tiles`,
      )
      .bind(now, key, crypto.randomUUID()),
    db
      .prepare(
        `INSERT INTO tasks (id, job_id, start_frame, end_frame, status, attempts, created_at, updated_at, kind)
         SELECT ?3, id, start_frame, end_frame, 'queued', 0, ?1, ?1, 'video' FROM jobs
         WHERE id = ${job} AND preview_video = 1 AND status IN ${OPEN} AND ${FRAMES_DONE}
           AND NOT EXISTS (SELECT 1 FROM tasks WHERE job_id = ${job} AND kind = 'video')`,
      )
      .bind(now, key, crypto.randomUUID()),
    db
      .prepare(
        `UPDATE jobs SET status = 'completed', finished_at = ?1, updated_at = ?1
         WHERE id = ${job} AND status IN ${OPEN} AND ${FRAMES_DONE}
           AND (preview_video = 0 OR EXISTS (SELECT 1 FROM tasks v WHERE v.job_id = jobs.id AND v.kind = 'video'
             AND v.status IN ('completed', 'failed')))`,
      )
      .bind(now, key),
    db
      .prepare(
        `UPDATE tasks SET status = 'completed', lease_expires_at = NULL, updated_at = ?1,
           message = 'closed with the job: every frame was stored'
         WHERE job_id = ${job} AND status IN ('queued', 'running') AND (SELECT status FROM jobs WHERE id = ${job}) = 'completed'`,
      )
      .bind(now, key),
    db.prepare(`SELECT status FROM jobs WHERE id = ${job.replace('?2', '?1')}`).bind(key),
  ];
}

/** Reads what `progressStatements` did, from the last five results of their batch. */
function jobProgress(results: D1Result[]): JobProgress {
  const [stitch, video, , , job] = results.slice(-5);
  return {
    completed: (job!.results[0] as { status: string } | undefined)?.status === 'completed',
    queuedTask: (stitch!.meta.changes ?? 0) + (video!.meta.changes ?? 0) > 0,
  };
}

/** Moves a job on (see progressStatements), in one batch. */
export async function completeJobIfDone(db: D1Database, jobId: string, now: number): Promise<JobProgress> {
  return jobProgress(await db.batch(progressStatements(db, { jobId }, now)));
}

/**
 * Completes a leased task and returns its job's id. Refused (409) while any frame of its range is
 * missing (for a tile or video task: its output), so a task can never be "done" with a frame
 * lost. Repeating a completion that already happened is accepted. The caller moves the job on
 * (completeJobIfDone).
 */
export async function completeTask(
  db: D1Database,
  taskId: string,
  workerId: string,
  leaseId: string,
  now: number,
  message?: string,
  /** Run first, in the same batch (marking the node as seen). */
  before: D1PreparedStatement[] = [],
): Promise<{ jobId: string; progress: JobProgress }> {
  const results = await db.batch([
    ...before,
    db
      .prepare(
        `UPDATE tasks SET status = 'completed', updated_at = ?1, message = COALESCE(?2, message), lease_expires_at = NULL
         WHERE id = ?3 AND lease_id = ?4 AND worker_id = ?5 AND status = 'running' AND ${DELIVERED}
         RETURNING job_id`,
      )
      .bind(now, message ?? null, taskId, leaseId, workerId),
    ...progressStatements(db, { taskId }, now),
  ]);
  const updated = results[before.length]!.results[0] as { job_id: string } | undefined;
  if (updated) return { jobId: updated.job_id, progress: jobProgress(results) };

  const task = await loadTask(db, taskId);
  if (task && task.status === 'completed' && task.lease_id === leaseId && task.worker_id === workerId) {
    return { jobId: task.job_id, progress: jobProgress(results) };
  }
  const held = assertLease(task, taskId, workerId, leaseId, true);
  if (held.kind === 'tile' || held.kind === 'video') {
    fail(409, `task ${taskId} is a ${held.kind} task and its output was not uploaded: PUT /tasks/${taskId}/output before reporting completed`);
  }
  const stored = await db
    .prepare(`WITH t AS (SELECT * FROM tasks WHERE id = ?) ${storedTaskFramesSql('t', 'f.frame', 't')}`)
    .bind(taskId)
    .all<{ frame: number }>();
  const have = new Set(stored.results.map((r) => r.frame));
  const missing = taskFrames(held.frame_ranges, held).filter((f) => !have.has(f)).slice(0, 20);
  fail(409, `frame(s) ${missing.join(', ')} of task ${taskId} were not uploaded: upload every frame before reporting completed`);
}

export interface FailTaskInput {
  taskId: string;
  workerId: string;
  leaseId: string;
  now: number;
  message: string;
  reason: string;
  logTail: string | null;
}

/**
 * Records a failed attempt. The task goes back to the queue while attempts remain; on the last
 * one it fails, and so does its job, with the reason and where to read the log. The node's
 * failures on this job count towards its blocklisting for the job. A failure ends a run of node
 * losses (lease-expiry.ts).
 * A video task is the exception: its last failure leaves a warning, and the job completes without it.
 *
 * Applied once per lease: the task records the lease whose failure it applied (`failed_lease`),
 * and the counters are bumped only by the batch whose task UPDATE applied it (`failure_uncounted`,
 * cleared by the batch's last statement). The same report again (a node retrying a report whose
 * answer was lost, or the group commit running the batch again after an error whose outcome it
 * could not know, see batch-together.ts) counts nothing and gets the first answer.
 * @returns the task's new status and its job's id
 */
export async function failTask(db: D1Database, input: FailTaskInput): Promise<{ status: 'queued' | 'failed'; jobId: string }> {
  const { taskId, workerId, leaseId, now, message, reason, logTail } = input;
  const firstLine = message.split('\n')[0]!.slice(0, 500);
  // The task's failure applied by this batch and not counted yet: ?T is the task, ?L the lease.
  const uncounted = (t: string, l: string) => `SELECT 1 FROM tasks WHERE id = ${t} AND failed_lease = ${l} AND failure_uncounted = 1`;
  const [updated] = await db.batch([
    db
      .prepare(
        `UPDATE tasks SET
           status = CASE WHEN attempts >= (SELECT max_attempts FROM jobs WHERE jobs.id = tasks.job_id) THEN 'failed' ELSE 'queued' END,
           lease_id = CASE WHEN attempts >= (SELECT max_attempts FROM jobs WHERE jobs.id = tasks.job_id) THEN lease_id ELSE NULL END,
           lease_expires_at = NULL, failure_reason = ?1, message = ?2, log_tail = ?3, updated_at = ?4,
           node_losses = 0, failed_lease = ?6, failure_uncounted = 1
         WHERE id = ?5 AND lease_id = ?6 AND worker_id = ?7 AND status = 'running'
         RETURNING status, job_id, kind`,
      )
      .bind(reason, message, logTail, now, taskId, leaseId, workerId),
    db
      .prepare(
        `INSERT INTO job_blocklist (job_id, worker_id, failures, last_reason, updated_at)
         SELECT job_id, ?1, 1, ?2, ?3 FROM tasks WHERE EXISTS (${uncounted('?4', '?5')}) AND id = ?4
         ON CONFLICT (job_id, worker_id) DO UPDATE SET failures = failures + 1, last_reason = excluded.last_reason,
           updated_at = excluded.updated_at`,
      )
      .bind(workerId, reason, now, taskId, leaseId),
    db
      .prepare(`UPDATE workers SET failures = failures + 1 WHERE id = ?1 AND EXISTS (${uncounted('?2', '?3')})`)
      .bind(workerId, taskId, leaseId),
    db
      .prepare(
        `UPDATE jobs SET status = 'failed', finished_at = ?1, updated_at = ?1,
           error = (SELECT ${taskFramesLabelSql('t')} || ' failed after ' || t.attempts
             || ' attempt(s): ' || ?2 || ' (log: /jobs/' || t.job_id || '/tasks/' || t.id || '/log)' FROM tasks t WHERE t.id = ?3)
         WHERE id = (SELECT job_id FROM tasks WHERE id = ?3 AND status = 'failed' AND kind <> 'video' AND EXISTS (${uncounted('?3', '?4')}))
           AND status IN ('queued', 'running', 'paused')`,
      )
      .bind(now, firstLine, taskId, leaseId),
    // A preview video that cannot be made does not fail the job: it says so among its warnings.
    db
      .prepare(
        `UPDATE jobs SET warnings = json_insert(warnings, '$[#]', 'the preview video could not be made: ' || ?2), updated_at = ?1
         WHERE id = (SELECT job_id FROM tasks WHERE id = ?3 AND status = 'failed' AND kind = 'video' AND EXISTS (${uncounted('?3', '?4')}))`,
      )
      .bind(now, firstLine, taskId, leaseId),
    // Counted: the same batch run again finds nothing to count.
    db.prepare(`UPDATE tasks SET failure_uncounted = 0 WHERE id = ?1 AND failure_uncounted = 1`).bind(taskId),
  ]);
  const row = updated!.results[0] as { status: 'queued' | 'failed'; job_id: string } | undefined;
  if (row) return { status: row.status, jobId: row.job_id };
  const task = await loadTask(db, taskId);
  // This lease's failure was applied already: the same answer, nothing counted again.
  if (task && task.failed_lease === leaseId && (task.status === 'queued' || task.status === 'failed')) {
    return { status: task.status, jobId: task.job_id };
  }
  assertLease(task, taskId, workerId, leaseId, true);
  fail(409, `task ${taskId} changed while this request ran; fetch new work`);
}
