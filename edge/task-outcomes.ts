/**
 * What happens when a node finishes a task: completion (only once every frame is stored),
 * failure (retried until the job's attempts run out, and counted against the node), and the
 * job-level consequences of both. Each outcome is one D1 batch, so it applies whole or not at all.
 */
import { fail } from './errors.ts';
import { assertLease, loadTask } from './task-lease.ts';

const UPLOADED_IN_RANGE = `(SELECT COUNT(*) FROM frames f WHERE f.job_id = tasks.job_id
  AND f.frame BETWEEN tasks.start_frame AND tasks.end_frame)`;

/**
 * Marks a job completed once all of its frames are stored, and closes the job's tasks that are
 * still open then: a node that died after uploading its last frame never reports, and its task
 * must not stay "running" in a finished job. Returns whether the job is completed.
 */
export async function completeJobIfDone(db: D1Database, jobId: string, now: number): Promise<boolean> {
  const [, , job] = await db.batch([
    db
      .prepare(
        `UPDATE jobs SET status = 'completed', finished_at = ?1, updated_at = ?1
         WHERE id = ?2 AND status IN ('queued', 'running', 'paused') AND completed_frames >= end_frame - start_frame + 1`,
      )
      .bind(now, jobId),
    db
      .prepare(
        `UPDATE tasks SET status = 'completed', lease_expires_at = NULL, updated_at = ?1,
           message = 'closed with the job: every frame was stored'
         WHERE job_id = ?2 AND status IN ('queued', 'running') AND (SELECT status FROM jobs WHERE id = ?2) = 'completed'`,
      )
      .bind(now, jobId),
    db.prepare(`SELECT status FROM jobs WHERE id = ?`).bind(jobId),
  ]);
  return (job!.results[0] as { status: string } | undefined)?.status === 'completed';
}

/**
 * Completes a leased task. Refused (409) while any frame of its range is missing, so a task can
 * never be "done" with a frame lost. Repeating a completion that already happened is accepted.
 */
export async function completeTask(
  db: D1Database,
  taskId: string,
  workerId: string,
  leaseId: string,
  now: number,
  message?: string,
): Promise<void> {
  const [updated] = await db.batch([
    db
      .prepare(
        `UPDATE tasks SET status = 'completed', updated_at = ?1, message = COALESCE(?2, message), lease_expires_at = NULL
         WHERE id = ?3 AND lease_id = ?4 AND worker_id = ?5 AND status = 'running'
           AND ${UPLOADED_IN_RANGE} = end_frame - start_frame + 1
         RETURNING job_id`,
      )
      .bind(now, message ?? null, taskId, leaseId, workerId),
    db
      .prepare(
        `UPDATE jobs SET status = 'completed', finished_at = ?1, updated_at = ?1
         WHERE id = (SELECT job_id FROM tasks WHERE id = ?2 AND status = 'completed')
           AND status IN ('queued', 'running', 'paused') AND completed_frames >= end_frame - start_frame + 1`,
      )
      .bind(now, taskId),
  ]);
  if (updated!.results.length > 0) return;

  const task = await loadTask(db, taskId);
  if (task && task.status === 'completed' && task.lease_id === leaseId && task.worker_id === workerId) return;
  const held = assertLease(task, taskId, workerId, leaseId, true);
  const { results } = await db
    .prepare(`SELECT frame FROM frames WHERE job_id = ? AND frame BETWEEN ? AND ?`)
    .bind(held.job_id, held.start_frame, held.end_frame)
    .all<{ frame: number }>();
  const have = new Set(results.map((r) => r.frame));
  const missing: number[] = [];
  for (let f = held.start_frame; f <= held.end_frame && missing.length < 20; f++) if (!have.has(f)) missing.push(f);
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
 * failures on this job count towards its blocklisting for the job.
 * @returns the task's new status
 */
export async function failTask(db: D1Database, input: FailTaskInput): Promise<'queued' | 'failed'> {
  const { taskId, workerId, leaseId, now, message, reason, logTail } = input;
  const firstLine = message.split('\n')[0]!.slice(0, 500);
  const [updated] = await db.batch([
    db
      .prepare(
        `UPDATE tasks SET
           status = CASE WHEN attempts >= (SELECT max_attempts FROM jobs WHERE jobs.id = tasks.job_id) THEN 'failed' ELSE 'queued' END,
           lease_id = CASE WHEN attempts >= (SELECT max_attempts FROM jobs WHERE jobs.id = tasks.job_id) THEN lease_id ELSE NULL END,
           lease_expires_at = NULL, failure_reason = ?1, message = ?2, log_tail = ?3, updated_at = ?4
         WHERE id = ?5 AND lease_id = ?6 AND worker_id = ?7 AND status = 'running'
         RETURNING status, job_id`,
      )
      .bind(reason, message, logTail, now, taskId, leaseId, workerId),
    db
      .prepare(
        `INSERT INTO job_blocklist (job_id, worker_id, failures, last_reason, updated_at)
         SELECT job_id, ?1, 1, ?2, ?3 FROM tasks WHERE id = ?4 AND worker_id = ?1 AND updated_at = ?3
           AND status IN ('queued', 'failed') AND failure_reason = ?2
         ON CONFLICT (job_id, worker_id) DO UPDATE SET failures = failures + 1, last_reason = excluded.last_reason,
           updated_at = excluded.updated_at`,
      )
      .bind(workerId, reason, now, taskId),
    db
      .prepare(
        `UPDATE workers SET failures = failures + 1
         WHERE id = ?1 AND EXISTS (SELECT 1 FROM tasks WHERE id = ?2 AND updated_at = ?3 AND status IN ('queued', 'failed'))`,
      )
      .bind(workerId, taskId, now),
    db
      .prepare(
        `UPDATE jobs SET status = 'failed', finished_at = ?1, updated_at = ?1,
           error = (SELECT 'frames ' || t.start_frame || '-' || t.end_frame || ' failed after ' || t.attempts
             || ' attempt(s): ' || ?2 || ' (log: /jobs/' || t.job_id || '/tasks/' || t.id || '/log)' FROM tasks t WHERE t.id = ?3)
         WHERE id = (SELECT job_id FROM tasks WHERE id = ?3 AND status = 'failed' AND updated_at = ?1)
           AND status IN ('queued', 'running', 'paused')`,
      )
      .bind(now, firstLine, taskId),
  ]);
  const row = updated!.results[0] as { status: 'queued' | 'failed' } | undefined;
  if (!row) assertLease(await loadTask(db, taskId), taskId, workerId, leaseId, true);
  if (!row) fail(409, `task ${taskId} changed while this request ran; fetch new work`);
  return row.status;
}
