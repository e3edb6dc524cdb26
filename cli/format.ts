/** Text output of the `farm` commands: durations, tables, job summaries, the ETA estimate. */
import type { JobStatusResponse } from '../protocol/schemas.ts';

/** 3725 -> "1 h 2 min", 65 -> "1 min 5 s", null -> "–". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '–';
  const s = Math.max(0, Math.round(seconds));
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  if (hours > 0) return `${hours} h ${minutes} min`;
  if (minutes > 0) return `${minutes} min ${s % 60} s`;
  return `${s} s`;
}

/** "5 min ago" from an ISO time. */
export function formatAgo(iso: string | null, now = Date.now()): string {
  if (!iso) return '–';
  return `${formatDuration((now - Date.parse(iso)) / 1000)} ago`;
}

export function formatPercent(progress: number): string {
  return `${(Math.floor(progress * 1000) / 10).toFixed(1)}%`;
}

/** Columns padded to their widest cell; the last column is not padded. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** A text progress bar of `width` characters. */
function bar(progress: number, width = 30): string {
  const filled = Math.max(0, Math.min(width, Math.round(progress * width)));
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

/** "14 done, 2 rendering, 0 failed, 8 queued". */
function frameCounts(job: JobStatusResponse): string {
  return `${job.completed_frames} done, ${job.running_frames} rendering, ${job.failed_frames} failed, ${job.queued_frames} queued`;
}

/** The multi-line summary `farm status` prints. */
export function describeStatus(job: JobStatusResponse, eta: number | null = job.eta_seconds): string {
  const lines = [
    `job      ${job.name} (${job.job_id})`,
    `status   ${job.status}`,
    `progress ${bar(job.progress)} ${formatPercent(job.progress)}  ${job.completed_frames}/${job.total_frames} frames (${job.frames ?? `${job.start_frame}-${job.end_frame}`}${job.order === 'progressive' ? ', progressive order' : ''})`,
    `frames   ${frameCounts(job)}`,
    `time     mean ${job.avg_frame_ms === null ? '–' : formatDuration(job.avg_frame_ms / 1000)} per frame, ETA ${formatDuration(eta)}`,
    `priority ${job.priority}`,
  ];
  if (job.device !== 'any' || job.tags.length > 0) lines.push(`runs on  ${job.device}${job.tags.length ? `, nodes tagged ${job.tags.join(', ')}` : ''}`);
  if (job.tiles) lines.push(`tiles    ${job.tiles}, stitched into one frame`);
  if (job.preview_video) lines.push(`video    ${job.preview_video.url ?? job.preview_video.status}`);
  if (job.error) lines.push(`error    ${job.error}`);
  for (const warning of job.warnings) lines.push(`warning  ${warning}`);
  return lines.join('\n');
}

/**
 * Seconds left, from measured frame times: the master's estimate (mean frame time of this job,
 * spread over the nodes rendering it) while it has one; otherwise the rate at which frames were
 * seen completing over the last WINDOW_MS of watching.
 */
export class EtaEstimator {
  static readonly WINDOW_MS = 120_000;
  private readonly samples: { at: number; completed: number }[] = [];

  add(job: JobStatusResponse, now = Date.now()): number | null {
    this.samples.push({ at: now, completed: job.completed_frames });
    while (this.samples.length > 2 && now - this.samples[0]!.at > EtaEstimator.WINDOW_MS) this.samples.shift();
    if (job.status === 'completed') return 0;
    if (job.status !== 'queued' && job.status !== 'running') return null;
    if (job.eta_seconds !== null) return job.eta_seconds;
    const first = this.samples[0]!;
    const done = job.completed_frames - first.completed;
    const elapsedS = (now - first.at) / 1000;
    if (done <= 0 || elapsedS <= 0) return null;
    return Math.round((job.total_frames - job.completed_frames) / (done / elapsedS));
  }
}
