/**
 * A job's progress as the API reports it. Frame counts come from the jobs row's counter and from
 * the job's tasks (one row per claimed chunk), never from a scan of every frame.
 */
import type { JobStatus, JobStatusResponse } from '../protocol/schemas.ts';
import { countFrames, formatFrameList } from '../protocol/frame-list.ts';
import { fail } from './errors.ts';
import { jobRow, type JobRow } from './db/jobs.ts';
import { RUNNABLE } from './db/state-machine.ts';
import { latestFailureReason, taskFrameCounts, videoTask } from './db/tasks.ts';
import { jobRowRanges } from './frame-ranges.ts';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

async function loadJobRow(db: D1Database, jobId: string): Promise<JobRow | null> {
  return (await jobRow(db, jobId)) ?? null;
}

export async function requireJobRow(db: D1Database, jobId: string): Promise<JobRow> {
  const job = await loadJobRow(db, jobId);
  if (!job) fail(404, `no job with id ${jobId}`);
  return job;
}

/** The full `job_status` answer for one job. */
export async function describeJob(db: D1Database, job: JobRow, now = Date.now()): Promise<JobStatusResponse> {
  const results = await taskFrameCounts(db, job.id, now);
  const running = results.find((r) => r.status === 'running');
  const runningFrames = running?.frames ?? 0;
  const failedFrames = results.find((r) => r.status === 'failed')?.frames ?? 0;
  const ranges = jobRowRanges(job);
  const total = countFrames(ranges);
  const avgFrameMs = job.frames_timed > 0 ? Math.round(job.frame_time_ms_total / job.frames_timed) : null;
  const remaining = total - job.completed_frames;
  const parallel = Math.max(1, running?.nodes ?? 1);
  // Only a failed job has a reason, and then its latest failed task gives it.
  const failureReason = job.status === 'failed' ? await latestFailureReason(db, job.id) : null;
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
    eta_seconds: avgFrameMs !== null && (RUNNABLE as readonly JobStatus[]).includes(job.status) ? Math.round((remaining * avgFrameMs) / parallel / 1000) : null,
    max_attempts: job.max_attempts,
    max_node_losses: job.max_node_losses,
  };
}

/** Where and how the job renders: device, tags, tiles, and the state of its preview video. */
async function placement(db: D1Database, job: JobRow): Promise<Pick<JobStatusResponse, 'device' | 'tags' | 'tiles' | 'preview_video'>> {
  let video: JobStatusResponse['preview_video'] = null;
  if (job.preview_video) {
    const task = await videoTask(db, job.id);
    const done = task?.status === 'completed' && task.output_size !== null;
    video = { status: task?.status ?? 'waiting', url: done ? `/jobs/${job.id}/video` : null, size: done ? task.output_size : null };
  }
  return { device: job.device, tags: JSON.parse(job.tags) as string[], tiles: job.tiles, preview_video: video };
}
