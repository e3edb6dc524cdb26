/**
 * Job rows as the API reads them, and the changes to a job that are not a status change (those
 * are the state machine's, state-machine.ts): priority, webhook URL, warnings, the blocklist.
 */
import { eq, sql } from 'drizzle-orm';
import type { WebhookStatus } from '../../protocol/api.ts';
import type { DeviceRequirement, FrameOrder, JobStatus, TaskKind, TaskStatus } from '../../protocol/schemas.ts';
import { all, get, openDb, run } from './client.ts';
import { jobs, tasks } from './schema.ts';
import { leaseHeld, LIVE, type LeaseRef } from './state-machine.ts';

export interface JobRow {
  id: string;
  name: string;
  status: JobStatus;
  priority: number;
  start_frame: number;
  end_frame: number;
  chunk_size: number | null;
  next_frame: number;
  /** A frame list's stored ranges (edge/frame-ranges.ts); null: every frame from start_frame to end_frame. */
  frame_ranges: string | null;
  frame_order: FrameOrder;
  blend_file: string;
  blend_sha256: string;
  blend_size: number;
  input_kind: string;
  /** For a manifest job: bytes its submission uploaded. */
  input_sent_bytes: number | null;
  max_attempts: number;
  max_node_failures: number;
  max_node_losses: number;
  completed_frames: number;
  frame_time_ms_total: number;
  frames_timed: number;
  error: string | null;
  warnings: string;
  created_at: number;
  updated_at: number;
  started_at: number | null;
  finished_at: number | null;
  device: DeviceRequirement;
  tags: string;
  tiles: number | null;
  preview_video: number;
}

/** Inserts a queued job and, for a split still, its `tiles` tile tasks, in one batch. */
export async function insertJobRows(d1: D1Database, job: typeof jobs.$inferInsert & { startFrame: number; createdAt: number }, tiles: number): Promise<void> {
  const db = openDb(d1);
  const tileTasks = Array.from({ length: tiles }, (_, index) =>
    db.insert(tasks).values({
      id: crypto.randomUUID(),
      jobId: job.id,
      startFrame: job.startFrame,
      endFrame: job.startFrame,
      status: 'queued' satisfies TaskStatus,
      attempts: 0,
      createdAt: job.createdAt,
      updatedAt: job.createdAt,
      kind: 'tile' satisfies TaskKind,
      tileIndex: index,
    }),
  );
  await db.batch([db.insert(jobs).values(job), ...tileTasks]);
}

/** A job, unless deleted: a deleted job is gone for every route, though the cron may still be removing its rows. */
export async function jobRow(d1: D1Database, jobId: string): Promise<JobRow | undefined> {
  return get(openDb(d1), sql`SELECT * FROM jobs WHERE id = ${jobId} AND ${LIVE('jobs')}`);
}

/**
 * A page of jobs, newest first, after the job created at `before.createdAt` with id `before.id`
 * (ids order jobs created in the same millisecond); `status` narrows it.
 */
export async function jobPage(d1: D1Database, before: { createdAt: number; id: string }, status: JobStatus | null, limit: number): Promise<JobRow[]> {
  return all(
    openDb(d1),
    sql`SELECT * FROM jobs WHERE (created_at < ${before.createdAt} OR (created_at = ${before.createdAt} AND id < ${before.id}))
          AND (${status} IS NULL OR status = ${status}) AND ${LIVE('jobs')}
        ORDER BY created_at DESC, id DESC LIMIT ${limit}`,
  );
}

/**
 * Applies a PATCH of a job in one batch: its priority, and its webhook URL (a new URL is armed:
 * called when the job finishes, or at once if it has finished; null removes it).
 */
export async function updateJob(d1: D1Database, jobId: string, change: { priority?: number; webhookUrl?: string | null }, now: number): Promise<void> {
  const db = openDb(d1);
  const { priority, webhookUrl } = change;
  const statements = [
    ...(priority !== undefined ? [db.update(jobs).set({ priority, updatedAt: now }).where(eq(jobs.id, jobId))] : []),
    ...(webhookUrl !== undefined
      ? [
          db
            .update(jobs)
            .set({
              webhookUrl,
              webhookState: webhookUrl === null ? null : 'armed',
              webhookAttempts: 0,
              webhookLastError: null,
              webhookDeliveredAt: null,
              webhookUpdatedAt: now,
              updatedAt: now,
            })
            .where(eq(jobs.id, jobId)),
        ]
      : []),
  ];
  const [first, ...rest] = statements;
  if (first) await db.batch([first, ...rest]);
}

/**
 * Warnings on a job: things a render node noticed that do not stop a render but make its frames
 * wrong, such as a missing texture (rendered magenta) or a missing linked library (its objects
 * left out). Kept in `jobs.warnings` (a JSON array of strings), deduplicated and capped, so a
 * thousand tasks reporting the same missing file leave one line. The most a job keeps; later ones
 * are dropped (the first ones say what to fix).
 */
export const MAX_JOB_WARNINGS = 200;

/**
 * Appends `warnings` to the job of a task, in one statement that also checks the lease, so a node
 * whose lease is gone adds nothing. Known warnings are not repeated; order is first seen; at most
 * MAX_JOB_WARNINGS are kept.
 */
export async function addJobWarnings(d1: D1Database, lease: LeaseRef, warnings: string[], now: number): Promise<void> {
  await run(
    openDb(d1),
    sql`UPDATE jobs SET updated_at = ${now}, warnings = (
          SELECT json_group_array(value) FROM (
            SELECT value, MIN(position) AS first FROM (
              SELECT value, key AS position FROM json_each(jobs.warnings)
              UNION ALL SELECT value, 1000000 + key FROM json_each(${JSON.stringify(warnings)})
            ) GROUP BY value ORDER BY first LIMIT ${MAX_JOB_WARNINGS}))
        WHERE id = (SELECT job_id FROM tasks WHERE ${leaseHeld(lease)})`,
  );
}

/** The nodes blocklisted on a job, or on their way to it: latest first. */
export async function jobBlocklist(
  d1: D1Database,
  jobId: string,
): Promise<{ worker_id: string; name: string | null; failures: number; last_reason: string | null; updated_at: number }[]> {
  return all(
    openDb(d1),
    sql`SELECT b.worker_id, w.name, b.failures, b.last_reason, b.updated_at FROM job_blocklist b
        LEFT JOIN workers w ON w.id = b.worker_id WHERE b.job_id = ${jobId} ORDER BY b.updated_at DESC`,
  );
}

/** Webhook state of a job not being deleted, for `GET /jobs/{id}/webhook`. */
export async function webhookRow(d1: D1Database, jobId: string) {
  return get<{
    webhook_url: string | null;
    webhook_state: WebhookStatus['state'];
    webhook_attempts: number;
    webhook_last_error: string | null;
    webhook_delivered_at: number | null;
  }>(
    openDb(d1),
    sql`SELECT webhook_url, webhook_state, webhook_attempts, webhook_last_error, webhook_delivered_at FROM jobs WHERE id = ${jobId} AND ${LIVE('jobs')}`,
  );
}
