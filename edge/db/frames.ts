/**
 * Frame rows: recording a stored frame (conditioned on the uploader's lease, with the job's and
 * node's counters), its preview, and the reads of a job's frames.
 */
import { sql } from 'drizzle-orm';
import type { TaskStatus } from '../../protocol/schemas.ts';
import { all, get, openDb, run } from './client.ts';
import { LIVE, statusIn, taskState } from './state-machine.ts';
import { touchStatements, type WorkerRow } from './workers.ts';

export interface FrameRow {
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

/** A page of a job's stored frames, in order, after frame `after`. */
export async function framePage(d1: D1Database, jobId: string, after: number, limit: number): Promise<FrameRow[]> {
  return all(openDb(d1), sql`SELECT * FROM frames WHERE job_id = ${jobId} AND frame > ${after} ORDER BY frame LIMIT ${limit}`);
}

/** A stored frame of a job not being deleted (its frames are gone at once, though the cron may not have removed them yet). */
export async function liveFrame(d1: D1Database, jobId: string, frame: number): Promise<FrameRow | undefined> {
  return get(
    openDb(d1),
    sql`SELECT * FROM frames WHERE job_id = ${jobId} AND frame = ${frame} AND EXISTS (SELECT 1 FROM jobs WHERE id = ${jobId} AND ${LIVE('jobs')})`,
  );
}

/** A stored frame's preview key, of any job. */
export async function framePreviewKey(d1: D1Database, jobId: string, frame: number): Promise<{ preview_key: string | null } | undefined> {
  return get(openDb(d1), sql`SELECT preview_key FROM frames WHERE job_id = ${jobId} AND frame = ${frame}`);
}

/** A video task's input: stored frame `frame` of the job. */
export async function storedFrameObject(d1: D1Database, jobId: string, frame: number): Promise<{ key: string; contentType: string } | undefined> {
  return get(openDb(d1), sql`SELECT r2_key AS key, content_type AS contentType FROM frames WHERE job_id = ${jobId} AND frame = ${frame}`);
}

/**
 * Records a frame's preview while the task that uploads it holds its lease, or completed with it
 * (a preview may follow the report); whether it was.
 */
export async function recordFramePreview(
  d1: D1Database,
  lease: { taskId: string; leaseId: string; jobId: string },
  frame: number,
  key: string,
): Promise<boolean> {
  const row = await get(
    openDb(d1),
    sql`UPDATE frames SET preview_key = ${key} WHERE job_id = ${lease.jobId} AND frame = ${frame}
          AND EXISTS (SELECT 1 FROM tasks WHERE id = ${lease.taskId} AND lease_id = ${lease.leaseId} AND ${statusIn('tasks', ['running', 'completed'] satisfies TaskStatus[])})
        RETURNING frame`,
  );
  return row !== undefined;
}

export interface FrameRecord {
  workerId: string;
  taskId: string;
  leaseId: string;
  jobId: string;
  frame: number;
  key: string;
  size: number;
  sha256: string;
  contentType: string;
  renderMs: number | null;
}

/**
 * Records a stored frame while its uploader holds the task's lease, in one batch that also marks
 * the node as seen (once per lease): a new frame (not one uploaded again) counts towards the
 * job's progress and mean frame time and the node's frames rendered. Answers the node (undefined:
 * never registered), whether the frame was recorded, the object a frame uploaded again replaced,
 * and the job's frames stored now.
 */
export async function recordFrame(
  d1: D1Database,
  f: FrameRecord,
  now: number,
  leaseMs: number,
): Promise<{ worker: WorkerRow | undefined; recorded: boolean; replaced: string | undefined; completedFrames: number }> {
  const db = openDb(d1);
  const leaseHeld = sql`EXISTS (SELECT 1 FROM tasks WHERE id = ${f.taskId} AND lease_id = ${f.leaseId} AND status = ${taskState('running')})`;
  const isNew = sql`NOT EXISTS (SELECT 1 FROM frames WHERE job_id = ${f.jobId} AND frame = ${f.frame})`;
  const [worker, , previous, , , inserted, job] = await db.batch([
    ...touchStatements(db, f.workerId, now, leaseMs),
    get<{ r2_key: string }>(db, sql`SELECT r2_key FROM frames WHERE job_id = ${f.jobId} AND frame = ${f.frame}`),
    run(
      db,
      sql`UPDATE jobs SET completed_frames = completed_frames + 1,
            frame_time_ms_total = frame_time_ms_total + COALESCE(${f.renderMs}, 0), frames_timed = frames_timed + (${f.renderMs} IS NOT NULL),
            updated_at = ${now}
          WHERE id = ${f.jobId} AND ${isNew} AND ${leaseHeld}`,
    ),
    run(db, sql`UPDATE workers SET frames_rendered = frames_rendered + 1 WHERE id = ${f.workerId} AND ${isNew} AND ${leaseHeld}`),
    all<{ frame: number }>(
      db,
      sql`INSERT INTO frames (job_id, frame, task_id, worker_id, r2_key, size, sha256, content_type, render_ms, created_at)
          SELECT ${f.jobId}, ${f.frame}, ${f.taskId}, ${f.workerId}, ${f.key}, ${f.size}, ${f.sha256}, ${f.contentType}, ${f.renderMs}, ${now}
          WHERE ${leaseHeld}
          ON CONFLICT (job_id, frame) DO UPDATE SET task_id = excluded.task_id, worker_id = excluded.worker_id,
            r2_key = excluded.r2_key, size = excluded.size, sha256 = excluded.sha256, content_type = excluded.content_type,
            render_ms = COALESCE(excluded.render_ms, frames.render_ms)
          RETURNING frame`,
    ),
    get<{ completed_frames: number }>(db, sql`SELECT completed_frames FROM jobs WHERE id = ${f.jobId}`),
  ]);
  return { worker, recorded: inserted.length > 0, replaced: previous?.r2_key, completedFrames: job?.completed_frames ?? 0 };
}

/** Whether a frames row names the object `key`. */
export async function frameNames(d1: D1Database, jobId: string, frame: number, key: string): Promise<boolean> {
  const row = await get(openDb(d1), sql`SELECT 1 AS n FROM frames WHERE job_id = ${jobId} AND frame = ${frame} AND r2_key = ${key}`);
  return row !== undefined;
}

/**
 * The keys among `entries` (`[key, job id, frame]`, of any jobs) that no frames row names. Each
 * is looked up by the job and frame its key names (the primary key), so a check costs a row read
 * per key whatever the job's size. One bound JSON array, whatever the page size (D1 allows 100
 * bound parameters per statement).
 */
export async function unrecordedFrames(d1: D1Database, entries: [key: string, jobId: string, frame: number][]): Promise<string[]> {
  const rows = await all<{ key: string }>(
    openDb(d1),
    sql`SELECT json_extract(value, '$[0]') AS key FROM json_each(${JSON.stringify(entries)})
        WHERE NOT EXISTS (SELECT 1 FROM frames f WHERE f.job_id = json_extract(value, '$[1]')
          AND f.frame = json_extract(value, '$[2]') AND f.r2_key = json_extract(value, '$[0]'))`,
  );
  return rows.map((r) => r.key);
}
