/** Creating a job: one row whatever its frame count (tasks are created as nodes claim ranges). */
import type { InputKind } from '../protocol/schemas.ts';

export interface NewJob {
  name: string;
  priority: number;
  startFrame: number;
  endFrame: number;
  chunkSize: number | null;
  maxAttempts: number;
  /** What nodes download: `<sha256>.blend` or `<sha256>.zip`. */
  blendFile: string;
  sha256: string;
  size: number;
  inputKind: InputKind;
  mainBlend: string | null;
  warnings: string[];
  /** Called when the job completes or fails (edge/webhooks.ts); armed from the start. */
  webhookUrl?: string | null;
}

/** Inserts a queued job and returns its id. */
export async function insertJob(db: D1Database, job: NewJob, now = Date.now()): Promise<string> {
  const jobId = crypto.randomUUID();
  await db
    .prepare(
      `INSERT INTO jobs (id, name, status, priority, start_frame, end_frame, chunk_size, next_frame, blend_file,
         blend_sha256, blend_size, input_kind, main_blend, max_attempts, warnings, created_at, updated_at, webhook_url, webhook_state)
       VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .bind(
      jobId,
      job.name.slice(0, 200),
      job.priority,
      job.startFrame,
      job.endFrame,
      job.chunkSize,
      job.startFrame,
      job.blendFile,
      job.sha256,
      job.size,
      job.inputKind,
      job.mainBlend,
      job.maxAttempts,
      JSON.stringify(job.warnings),
      now,
      now,
      job.webhookUrl ?? null,
      job.webhookUrl ? 'armed' : null,
    )
    .run();
  return jobId;
}
