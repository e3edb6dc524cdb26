/**
 * Task rows as the node routes read and write them beside status changes (those are the state
 * machine's, state-machine.ts): the task a lease names, renewals, outputs, logs, and the lists
 * the API shows.
 */
import { and, eq, sql } from 'drizzle-orm';
import type { TaskKind, TaskStatus } from '../../protocol/schemas.ts';
import { storedTaskFramesSql, taskFrameCountSql } from '../frame-ranges.ts';
import { all, get, names, openDb } from './client.ts';
import { tasks } from './schema.ts';
import { leaseHeld, LIVE, statusIn, taskKind, taskState, type LeaseRef, type StoredJobStatus } from './state-machine.ts';
import { touchStatements, type WorkerRow } from './workers.ts';

export interface TaskRow {
  id: string;
  job_id: string;
  start_frame: number;
  end_frame: number;
  /** See taskFrames (edge/frame-ranges.ts). */
  frame_step: number;
  status: TaskStatus;
  worker_id: string | null;
  lease_id: string | null;
  lease_expires_at: number | null;
  attempts: number;
  /** The lease whose failure report was applied last (see failureStatements). */
  failed_lease: string | null;
  log_key: string | null;
  kind: TaskKind;
  tile_index: number | null;
  /** The job's frame list (edge/frame-ranges.ts); null: the task covers every frame of its range. */
  frame_ranges: string | null;
}

/** A batch of one, so that under load the read joins other requests' D1 batches (batch-together.ts). */
export async function loadTask(d1: D1Database, taskId: string): Promise<TaskRow | null> {
  const db = openDb(d1);
  const [task] = await db.batch([get<TaskRow>(db, sql`SELECT t.*, j.frame_ranges FROM tasks t LEFT JOIN jobs j ON j.id = t.job_id WHERE t.id = ${taskId}`)]);
  return task ?? null;
}

/** The frames a task has stored (storedTaskFramesSql). */
export async function storedTaskFrames(d1: D1Database, taskId: string): Promise<number[]> {
  const rows = await all<{ frame: number }>(
    openDb(d1),
    sql`WITH t AS (SELECT * FROM tasks WHERE id = ${taskId}) ${sql.raw(storedTaskFramesSql('t', 'f.frame', 't'))}`,
  );
  return rows.map((r) => r.frame);
}

export interface Renewal {
  leaseExpiresAt: number;
  message: string | null;
  currentFrame: number | null;
  peakMemMb: number | null;
}

/**
 * Marks the node as seen (when stale) and renews the lease while it is the task's, even past its
 * expiry: a holder back from a dropped link keeps its work unless another node took the task
 * meanwhile. Answers the node (undefined: never registered) and the renewed lease with its job's
 * status (undefined: the lease is not the task's).
 */
export async function renewLease(
  d1: D1Database,
  lease: LeaseRef,
  renewal: Renewal,
  now: number,
  leaseMs: number,
): Promise<{ worker: WorkerRow | undefined; renewed: { lease_expires_at: number; job_status: StoredJobStatus } | undefined }> {
  const db = openDb(d1);
  const [worker, , renewed] = await db.batch([
    ...touchStatements(db, lease.workerId, now, leaseMs),
    get<{ lease_expires_at: number; job_status: StoredJobStatus }>(
      db,
      sql`UPDATE tasks SET lease_expires_at = ${renewal.leaseExpiresAt}, updated_at = ${now}, message = COALESCE(${renewal.message}, message),
            current_frame = COALESCE(${renewal.currentFrame}, current_frame),
            peak_mem_mb = MAX(COALESCE(peak_mem_mb, 0), COALESCE(${renewal.peakMemMb}, 0))
          WHERE ${leaseHeld(lease)}
          RETURNING lease_expires_at, (SELECT status FROM jobs WHERE jobs.id = tasks.job_id) AS job_status`,
    ),
  ]);
  return { worker, renewed };
}

/** Records a tile's or video's output while the lease is the task's; whether it was. */
export async function recordTaskOutput(d1: D1Database, lease: LeaseRef, output: { key: string; size: number; sha256: string }, now: number): Promise<boolean> {
  const row = await get(
    openDb(d1),
    sql`UPDATE tasks SET output_key = ${output.key}, output_size = ${output.size}, output_sha256 = ${output.sha256}, updated_at = ${now}
        WHERE ${leaseHeld(lease)} RETURNING id`,
  );
  return row !== undefined;
}

/** Where a task's log is; the lease must be the task's. */
export async function recordTaskLog(d1: D1Database, taskId: string, leaseId: string, key: string): Promise<void> {
  await openDb(d1)
    .update(tasks)
    .set({ logKey: key })
    .where(and(eq(tasks.id, taskId), eq(tasks.leaseId, leaseId)));
}

/** A stitch task's input: the stored tile `n` of the job. */
export async function storedTile(d1: D1Database, jobId: string, n: number): Promise<{ key: string; contentType: string } | undefined> {
  return get(
    openDb(d1),
    sql`SELECT output_key AS key, 'image/png' AS contentType FROM tasks
        WHERE job_id = ${jobId} AND kind = ${taskKind('tile')} AND tile_index = ${n} AND status = ${taskState('completed')} AND output_key IS NOT NULL`,
  );
}

/** The job's finished preview video, if made. */
export async function videoOutputKey(d1: D1Database, jobId: string): Promise<string | null> {
  const row = await get<{ output_key: string | null }>(
    openDb(d1),
    sql`SELECT output_key FROM tasks WHERE job_id = ${jobId} AND kind = ${taskKind('video')} AND status = ${taskState('completed')}`,
  );
  return row?.output_key ?? null;
}

/** The state of the job's preview video task, if any. */
export async function videoTask(d1: D1Database, jobId: string): Promise<{ status: TaskStatus; output_size: number | null } | undefined> {
  return get(openDb(d1), sql`SELECT status, output_size FROM tasks WHERE job_id = ${jobId} AND kind = ${taskKind('video')} LIMIT 1`);
}

export type TaskListRow = Pick<
  TaskRow,
  'id' | 'start_frame' | 'end_frame' | 'frame_step' | 'status' | 'worker_id' | 'attempts' | 'log_key' | 'lease_expires_at' | 'kind' | 'tile_index'
> & {
  node_losses: number;
  message: string | null;
  failure_reason: string | null;
  current_frame: number | null;
  peak_mem_mb: number | null;
  created_at: number;
  updated_at: number;
};

/** A job's tasks as `GET /jobs/{id}/tasks` lists them: by frame, a video's last. */
export async function jobTasks(d1: D1Database, jobId: string): Promise<TaskListRow[]> {
  return all(
    openDb(d1),
    sql`SELECT id, start_frame, end_frame, frame_step, status, worker_id, attempts, node_losses, message, failure_reason, log_key, current_frame,
          peak_mem_mb, lease_expires_at, created_at, updated_at, kind, tile_index FROM tasks WHERE job_id = ${jobId}
        ORDER BY kind = 'video', start_frame, CASE kind WHEN 'tile' THEN 0 WHEN 'render' THEN 1 ELSE 2 END, tile_index LIMIT 5000`,
  );
}

/** A task's log: its R2 key or the tail the node reported; undefined when the job has no such task. */
export async function taskLog(d1: D1Database, jobId: string, taskId: string): Promise<{ log_key: string | null; log_tail: string | null } | undefined> {
  return get(
    openDb(d1),
    sql`SELECT log_key, log_tail FROM tasks WHERE id = ${taskId} AND job_id = ${jobId} AND EXISTS (SELECT 1 FROM jobs WHERE id = ${jobId} AND ${LIVE('jobs')})`,
  );
}

/** The reason the latest failed task of a job gave. */
export async function latestFailureReason(d1: D1Database, jobId: string): Promise<string | null> {
  const row = await get<{ failure_reason: string | null }>(
    openDb(d1),
    sql`SELECT failure_reason FROM tasks WHERE job_id = ${jobId} AND status = ${taskState('failed')} ORDER BY updated_at DESC LIMIT 1`,
  );
  return row?.failure_reason ?? null;
}

/** Frames of a job's running / failed tasks not yet uploaded, and the nodes on them, per status, in one query. */
export async function taskFrameCounts(d1: D1Database, jobId: string, now: number): Promise<{ status: string; frames: number; nodes: number }[]> {
  return all(
    openDb(d1),
    sql`SELECT t.status AS status,
          COALESCE(SUM(${sql.raw(taskFrameCountSql('t', 'j'))} - (SELECT COUNT(*) FROM (${sql.raw(storedTaskFramesSql('t', '1'))}))), 0) AS frames,
          COUNT(DISTINCT t.worker_id) AS nodes
        FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE t.job_id = ${jobId} AND ${statusIn('t', ['running', 'failed'] satisfies TaskStatus[])}
          AND t.kind IN ${names(['render', 'stitch'] satisfies TaskKind[])} AND (t.status = ${taskState('failed')} OR t.lease_expires_at >= ${now})
        GROUP BY t.status`,
  );
}
