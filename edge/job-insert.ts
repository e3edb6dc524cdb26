/**
 * Creating a job: one row whatever its frame count (tasks are created as nodes claim ranges).
 * A split still is the exception: its tile tasks (at most MAX_TILES) are created with the job.
 */
import { DEFAULT_MAX_NODE_LOSSES, type CreateJobRequest, type DeviceRequirement, type FrameOrder, type InputKind } from '../protocol/schemas.ts';
import { insertJobRows } from './db/jobs.ts';
import { firstCursor } from './frame-order.ts';
import type { JobFrames } from './frame-ranges.ts';

export interface NewJob {
  name: string;
  priority: number;
  startFrame: number;
  endFrame: number;
  /** A frame list's stored ranges (edge/frame-ranges.ts, newJobFrames); null or absent: every frame. */
  frameRanges?: string | null;
  /** How many frames the job has (of a frame list, its listed ones). */
  totalFrames: number;
  /** The order its frames are handed out in (edge/frame-order.ts); sequential unless given. */
  frameOrder?: FrameOrder;
  chunkSize: number | null;
  maxAttempts: number;
  /** max_node_losses; DEFAULT_MAX_NODE_LOSSES unless given. */
  maxNodeLosses?: number;
  /** What nodes download: `<sha256>.blend`, `<sha256>.zip` or `<sha256>.manifest`. */
  blendFile: string;
  sha256: string;
  size: number;
  inputKind: InputKind;
  mainBlend: string | null;
  warnings: string[];
  /** Called when the job completes or fails (edge/webhooks.ts); armed from the start. */
  webhookUrl?: string | null;
  device?: DeviceRequirement;
  tags?: string[];
  /** Split the job's one frame into this many tiles. */
  tiles?: number | null;
  previewVideo?: boolean;
  /** For a manifest: bytes of the blobs its submission uploaded. */
  inputSentBytes?: number | null;
}

/** The job settings both submissions (`POST /submit_job`, `POST /jobs`) take, by their wire names. */
type JobSettingsFields = Pick<
  CreateJobRequest,
  'priority' | 'chunk_size' | 'max_attempts' | 'max_node_losses' | 'webhook_url' | 'device' | 'tags' | 'tiles' | 'preview_video' | 'order'
> & { warnings?: string[] };

/** A submission's settings and frames as a NewJob's, with the defaults written once. */
export function jobSettings(fields: JobSettingsFields, frames: JobFrames) {
  return {
    priority: fields.priority ?? 50,
    startFrame: frames.startFrame,
    endFrame: frames.endFrame,
    frameRanges: frames.frameRanges,
    totalFrames: frames.totalFrames,
    frameOrder: fields.order ?? 'sequential',
    chunkSize: fields.chunk_size ?? null,
    maxAttempts: fields.max_attempts ?? 3,
    maxNodeLosses: fields.max_node_losses,
    warnings: fields.warnings ?? [],
    webhookUrl: fields.webhook_url ?? null,
    device: fields.device,
    tags: fields.tags,
    tiles: fields.tiles ?? null,
    previewVideo: fields.preview_video ?? false,
  } satisfies Partial<NewJob>;
}

/** Inserts a queued job (and a split still's tile tasks, in the same batch) and returns its id. */
export async function insertJob(db: D1Database, job: NewJob, now = Date.now()): Promise<string> {
  const jobId = crypto.randomUUID();
  const tiles = job.tiles ?? null;
  const frameOrder = job.frameOrder ?? 'sequential';
  await insertJobRows(
    db,
    {
      id: jobId,
      name: job.name.slice(0, 200),
      status: 'queued',
      priority: job.priority,
      startFrame: job.startFrame,
      endFrame: job.endFrame,
      chunkSize: job.chunkSize,
      // A split still's frame is rendered by its tile tasks, never by the frame cursor.
      nextFrame: tiles ? job.endFrame + 1 : firstCursor(frameOrder, job),
      blendFile: job.blendFile,
      blendSha256: job.sha256,
      blendSize: job.size,
      inputKind: job.inputKind,
      mainBlend: job.mainBlend,
      maxAttempts: job.maxAttempts,
      warnings: JSON.stringify(job.warnings),
      createdAt: now,
      updatedAt: now,
      webhookUrl: job.webhookUrl ?? null,
      webhookState: job.webhookUrl ? 'armed' : null,
      device: job.device ?? 'any',
      tags: JSON.stringify(job.tags ?? []),
      tiles,
      previewVideo: job.previewVideo ?? false,
      maxNodeLosses: job.maxNodeLosses ?? DEFAULT_MAX_NODE_LOSSES,
      inputSentBytes: job.inputSentBytes ?? null,
      frameRanges: job.frameRanges ?? null,
      frameOrder,
    },
    tiles ?? 0,
  );
  return jobId;
}
