/**
 * What happens when a node finishes a task: completion (only once every frame is stored),
 * failure (retried until the job's attempts run out, and counted against the node, once per
 * lease), and the job-level consequences of both. The state machine applies each outcome in one
 * D1 batch, so it applies whole or not at all (db/state-machine.ts); here, why a report that
 * changed nothing was refused, or that it had been applied already.
 */
import { completeLeasedTask, failLeasedTask, moveJobOn, type FailureReport, type JobProgress } from './db/state-machine.ts';
import { loadTask, storedTaskFrames } from './db/tasks.ts';
import { fail } from './errors.ts';
import { taskFrames } from './frame-ranges.ts';
import { assertLease } from './task-lease.ts';

/** Moves a job on (queues its stitch or video task, or completes it), in one batch. */
export async function completeJobIfDone(db: D1Database, jobId: string, now: number): Promise<JobProgress> {
  return moveJobOn(db, jobId, now);
}

/**
 * Completes a leased task and moves its job on; returns its job's id. Refused (409) while any
 * frame of its range is missing (for a tile or video task: its output), so a task can never be
 * "done" with a frame lost. Repeating a completion that already happened is accepted. With
 * `touch`, the same batch first marks the node as seen.
 */
export async function completeTask(
  db: D1Database,
  taskId: string,
  workerId: string,
  leaseId: string,
  now: number,
  message?: string,
  touch?: { leaseMs: number },
): Promise<{ jobId: string; progress: JobProgress }> {
  const { jobId, progress } = await completeLeasedTask(db, { taskId, workerId, leaseId }, now, message ?? null, touch);
  if (jobId) return { jobId, progress };

  const task = await loadTask(db, taskId);
  if (task && task.status === 'completed' && task.lease_id === leaseId && task.worker_id === workerId) {
    return { jobId: task.job_id, progress };
  }
  const held = assertLease(task, taskId, workerId, leaseId, true);
  if (held.kind === 'tile' || held.kind === 'video') {
    fail(409, `task ${taskId} is a ${held.kind} task and its output was not uploaded: PUT /tasks/${taskId}/output before reporting completed`);
  }
  const have = new Set(await storedTaskFrames(db, taskId));
  const missing = taskFrames(held.frame_ranges, held)
    .filter((f) => !have.has(f))
    .slice(0, 20);
  fail(409, `frame(s) ${missing.join(', ')} of task ${taskId} were not uploaded: upload every frame before reporting completed`);
}

/**
 * Records a failed attempt (db/state-machine.ts failureStatements): the task is queued again
 * while attempts remain, else it fails, and its job with it (a preview video's leaves a warning).
 * The same report again (a node retrying a report whose answer was lost, or the group commit
 * running the batch again, see batch-together.ts) counts nothing and gets the first answer.
 * @returns the task's new status and its job's id
 */
export async function failTask(db: D1Database, input: FailureReport): Promise<{ status: 'queued' | 'failed'; jobId: string }> {
  const { taskId, workerId, leaseId } = input;
  const row = await failLeasedTask(db, input);
  if (row) return { status: row.status, jobId: row.job_id };
  const task = await loadTask(db, taskId);
  // This lease's failure was applied already: the same answer, nothing counted again.
  if (task && task.failed_lease === leaseId && (task.status === 'queued' || task.status === 'failed')) {
    return { status: task.status, jobId: task.job_id };
  }
  assertLease(task, taskId, workerId, leaseId, true);
  fail(409, `task ${taskId} changed while this request ran; fetch new work`);
}
