/**
 * A job's progress as the API reports it. Frame counts come from the jobs row's counter and from
 * the job's tasks (one row per claimed chunk), never from a scan of every frame.
 */
import type { DeviceRequirement, FrameOrder, JobStatus, JobStatusResponse, TaskStatus } from '../protocol/schemas.ts';
import { countFrames, formatFrameList } from '../protocol/frame-list.ts';
import { fail } from './errors.ts';
import { jobRowRanges, storedTaskFramesSql, taskFrameCountSql } from './frame-ranges.ts';

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

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** Frames of running / failed tasks not yet uploaded, per job, in one query. */
const TASK_FRAMES_SQL = `SELECT t.status AS status,
    COALESCE(SUM(${taskFrameCountSql('t', 'j')} - (SELECT COUNT(*) FROM (${storedTaskFramesSql('t', '1')}))), 0) AS frames,
    COUNT(DISTINCT t.worker_id) AS nodes
  FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE t.job_id = ?1 AND t.status IN ('running', 'failed') AND t.kind IN ('render', 'stitch')
    AND (t.status = 'failed' OR t.lease_expires_at >= ?2)
  GROUP BY t.status`;

export async function loadJobRow(db: D1Database, jobId: string): Promise<JobRow | null> {
  // A deleted job is gone for every route, though the cron may still be removing its rows.
  return db.prepare(`SELECT * FROM jobs WHERE id = ? AND status <> 'deleted'`).bind(jobId).first<JobRow>();
}

export async function requireJobRow(db: D1Database, jobId: string): Promise<JobRow> {
  const job = await loadJobRow(db, jobId);
  if (!job) fail(404, `no job with id ${jobId}`);
  return job;
}

/** The full `job_status` answer for one job. */
export async function describeJob(db: D1Database, job: JobRow, now = Date.now()): Promise<JobStatusResponse> {
  const { results } = await db.prepare(TASK_FRAMES_SQL).bind(job.id, now).all<{ status: string; frames: number; nodes: number }>();
  const running = results.find((r) => r.status === 'running');
  const runningFrames = running?.frames ?? 0;
  const failedFrames = results.find((r) => r.status === 'failed')?.frames ?? 0;
  const ranges = jobRowRanges(job);
  const total = countFrames(ranges);
  const avgFrameMs = job.frames_timed > 0 ? Math.round(job.frame_time_ms_total / job.frames_timed) : null;
  const remaining = total - job.completed_frames;
  const activeStates: JobStatus[] = ['queued', 'running'];
  const parallel = Math.max(1, running?.nodes ?? 1);
  // Only a failed job has a reason, and then its latest failed task gives it.
  const failureReason =
    job.status === 'failed'
      ? ((await db
          .prepare(`SELECT failure_reason FROM tasks WHERE job_id = ? AND status = 'failed' ORDER BY updated_at DESC LIMIT 1`)
          .bind(job.id)
          .first<string | null>('failure_reason')) ?? null)
      : null;
  return {
    ...(await placement(db, job)),
    job_id: job.id,
    name: job.name,
    status: job.status,
    priority: job.priority,
    start_frame: job.start_frame,
    end_frame: job.end_frame,
    frames: job.frame_ranges === null ? null : formatFrameList(ranges),
    order: job.frame_order,
    chunk_size: job.chunk_size,
    total_frames: total,
    completed_frames: job.completed_frames,
    failed_frames: failedFrames,
    running_frames: runningFrames,
    queued_frames: Math.max(0, total - job.completed_frames - runningFrames - failedFrames),
    progress: total > 0 ? Math.round((job.completed_frames / total) * 10_000) / 10_000 : 0,
    blend_file: job.blend_file,
    blend_sha256: job.blend_sha256,
    error: job.error,
    failure_reason: failureReason,
    warnings: JSON.parse(job.warnings) as string[],
    created_at: iso(job.created_at)!,
    started_at: iso(job.started_at),
    finished_at: iso(job.finished_at),
    avg_frame_ms: avgFrameMs,
    eta_seconds:
      avgFrameMs !== null && activeStates.includes(job.status) ? Math.round((remaining * avgFrameMs) / parallel / 1000) : null,
    max_attempts: job.max_attempts,
    max_node_losses: job.max_node_losses,
  };
}

/** Where and how the job renders: device, tags, tiles, and the state of its preview video. */
async function placement(db: D1Database, job: JobRow): Promise<Pick<JobStatusResponse, 'device' | 'tags' | 'tiles' | 'preview_video'>> {
  let video: JobStatusResponse['preview_video'] = null;
  if (job.preview_video) {
    const task = await db
      .prepare(`SELECT status, output_size FROM tasks WHERE job_id = ? AND kind = 'video' LIMIT 1`)
      .bind(job.id)
      .first<{ status: TaskStatus; output_size: number | null }>();
    const done = task?.status === 'completed' && task.output_size !== null;
    video = { status: task?.status ?? 'waiting', url: done ? `/jobs/${job.id}/video` : null, size: done ? task.output_size : null };
  }
  return { device: job.device, tags: JSON.parse(job.tags) as string[], tiles: job.tiles, preview_video: video };
}
