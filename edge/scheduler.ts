/**
 * Handing out work: a node's claim, made by one D1 batch (db/claims.ts, where the rules of what
 * a node is given are), read into what the node is told (describeClaim).
 */
import type { TaskAssignment } from '../protocol/schemas.ts';
import { runClaim, type AssignmentJobRow, type ClaimedTask } from './db/claims.ts';
import { RUNNABLE } from './db/state-machine.ts';
import { DEFAULT_MAX_CHUNK_FRAMES } from './env.ts';
import { taskFrames } from './frame-ranges.ts';

export interface ClaimOptions {
  workerId: string;
  now: number;
  leaseMs: number;
  /** Target wall time of one adaptive chunk. */
  targetChunkMs: number;
  /** Most frames in one adaptive chunk (MAX_CHUNK_FRAMES); DEFAULT_MAX_CHUNK_FRAMES unless set. */
  maxChunkFrames?: number;
  /**
   * How many nodes share the work, for shrinking chunks near the end; when left out, the claim
   * counts the enabled nodes seen within `leaseMs` itself.
   */
  activeNodes?: number;
  /** The new lease's id (the node's `claim_id`, see claim-redelivery.ts); random when absent. */
  leaseId?: string;
}

interface ClaimedRow extends ClaimedTask {
  /** The rows describeClaim needs, read by the claim's own batch so that it needs no other. */
  prefetched: AssignmentRows;
}

interface AssignmentRows {
  job: AssignmentJobRow;
  uploadedFrames: number[];
  lease: { lease_id: string; lease_expires_at: number };
}

/**
 * What a claim found. `claim_id_used`: the lease id asked for names an earlier claim that is no
 * longer this node's live one (it finished, or went to another node), so nothing was claimed
 * with it: claim again with a fresh id.
 */
export type ClaimResult = (
  | { outcome: 'unknown_worker' }
  | { outcome: 'disabled' }
  | { outcome: 'none' }
  | { outcome: 'claim_id_used' }
  | { outcome: 'claimed'; claimed: ClaimedRow; redelivered: boolean }
) & {
  /** Whether the batch ended jobs (leases that ran out on a last attempt): their webhooks are due. */
  jobsEnded: boolean;
};

/**
 * Claims the next piece of work for a node, in one D1 batch that also marks the node as seen (once
 * per lease: a claim that finds nothing writes nothing) and,
 * when the node's claim id was used before (a retry whose answer was lost, see
 * claim-redelivery.ts), finds that claim again instead of making another.
 */
export async function claimTask(db: D1Database, opts: ClaimOptions): Promise<ClaimResult> {
  const {
    worker,
    jobsEnded: ended,
    made,
    lease: row,
    uploadedFrames,
  } = await runClaim(db, {
    workerId: opts.workerId,
    now: opts.now,
    leaseMs: opts.leaseMs,
    leaseId: opts.leaseId ?? crypto.randomUUID(),
    taskId: crypto.randomUUID(),
    targetChunkMs: opts.targetChunkMs,
    maxChunkFrames: opts.maxChunkFrames ?? DEFAULT_MAX_CHUNK_FRAMES,
    activeNodes: opts.activeNodes ?? null,
  });
  const jobsEnded = ended > 0;
  if (!worker) return { outcome: 'unknown_worker', jobsEnded };
  if (!worker.enabled) return { outcome: 'disabled', jobsEnded };
  if (!row) return { outcome: 'none', jobsEnded };
  if (!made) {
    // Nothing new was claimed, but the lease id names a task: this node's earlier claim, if still live.
    const live =
      row.worker_id === opts.workerId &&
      row.task_status === 'running' &&
      row.lease_expires_at >= opts.now &&
      (RUNNABLE as readonly string[]).includes(row.job_status);
    if (!live) return { outcome: 'claim_id_used', jobsEnded };
  }
  const {
    id,
    job_id,
    start_frame,
    end_frame,
    frame_step,
    attempts,
    kind,
    tile_index,
    lease_expires_at,
    name,
    blend_file,
    blend_sha256,
    blend_size,
    input_kind,
    main_blend,
    device,
    tiles,
    frame_ranges,
  } = row;
  return {
    outcome: 'claimed',
    jobsEnded,
    redelivered: !made,
    claimed: {
      id,
      job_id,
      start_frame,
      end_frame,
      frame_step,
      attempts,
      kind,
      tile_index,
      prefetched: {
        job: { name, blend_file, blend_sha256, blend_size, input_kind, main_blend, device, tiles, frame_ranges },
        uploadedFrames,
        lease: { lease_id: row.lease_id, lease_expires_at },
      },
    },
  };
}

/** Builds the node's assignment from a claimed row: the frames still missing, the blend, the lease. */
export function describeClaim(claimed: ClaimedRow, leaseMs: number): Omit<TaskAssignment, 'frames'> & { frames: number[] } {
  const rows = claimed.prefetched;
  const { job, lease: leaseRow } = rows;
  // A render or stitch skips frames already stored; a tile renders its frame's tile, and a
  // video is made of every frame (all stored by then).
  const done = claimed.kind === 'render' || claimed.kind === 'stitch' ? new Set(rows.uploadedFrames) : new Set<number>();
  const frames = taskFrames(job.frame_ranges, claimed).filter((f) => !done.has(f));
  const tileCount = job.tiles ?? 0;
  return {
    task_id: claimed.id,
    lease_id: leaseRow.lease_id,
    job_id: claimed.job_id,
    job_name: job.name,
    frames,
    start_frame: claimed.start_frame,
    end_frame: claimed.end_frame,
    blend_file: job.blend_file,
    blend_sha256: job.blend_sha256,
    blend_size: job.blend_size,
    input_kind: job.input_kind,
    main_blend: job.main_blend,
    lease_expires_at: new Date(leaseRow.lease_expires_at).toISOString(),
    lease_ms: leaseMs,
    attempt: claimed.attempts,
    kind: claimed.kind,
    device: job.device,
    tile:
      claimed.kind === 'tile' && claimed.tile_index !== null
        ? { index: claimed.tile_index, count: tileCount }
        : claimed.kind === 'stitch'
          ? { index: 0, count: tileCount }
          : null,
  };
}
