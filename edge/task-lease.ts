/**
 * Fencing: every update, upload and release names the lease it holds. These helpers find the
 * task a lease-bearing request is about and explain a refusal precisely.
 */
import { loadTask, type TaskRow } from './db/tasks.ts';
import { fail } from './errors.ts';
import { isTaskFrame } from './frame-ranges.ts';

/** Answers 404 for an unknown task and 409 for a lease that is not (or no longer) the task's. */
export function assertLease(task: TaskRow | null, taskId: string, workerId: string, leaseId: string, needRunning: boolean): TaskRow {
  if (!task) fail(404, `no task with id ${taskId}`);
  if (task.lease_id !== leaseId || task.worker_id !== workerId) {
    fail(409, `lease ${leaseId} is not the current lease of task ${taskId}: the task was given to another node or released; stop working on it`);
  }
  if (needRunning && task.status !== 'running') {
    fail(409, `task ${taskId} is ${task.status}, not running: stop working on it`);
  }
  return task;
}

/** Answers 400 unless `frame` is one of the frames task `task` renders (taskFrames). */
export function assertTaskFrame(task: TaskRow, frame: number): void {
  if (!isTaskFrame(task.frame_ranges, task, frame)) {
    const listed = task.frame_ranges === null ? '' : ", those of the job's frame list";
    const step = task.frame_step > 1 ? `, step ${task.frame_step} through the job's frames` : '';
    fail(400, `frame ${frame} is not in task ${task.id} (frames ${task.start_frame}-${task.end_frame}${listed}${step})`);
  }
}

/** Explains why a conditional UPDATE on a leased task changed nothing. */
export async function explainLeaseRefusal(db: D1Database, taskId: string, workerId: string, leaseId: string): Promise<never> {
  assertLease(await loadTask(db, taskId), taskId, workerId, leaseId, true);
  fail(409, `task ${taskId} changed while this request ran; fetch new work`);
}
