/**
 * Handing out work. A claim is one D1 batch (a single transaction), so two nodes can never be
 * given the same frames:
 *
 *  1. expired leases of tasks that lost their node max_node_losses times in a row fail those
 *     tasks (and their jobs, but for a preview video's: that job completes without its video);
 *  2. otherwise-claimable tasks (released, or leased but expired) are re-leased, best job first;
 *  3. if nothing was re-leased, the best job's frame cursor is advanced by one chunk (in the
 *     job's order, edge/frame-order.ts) and
 *  4. a task row is inserted for the frames the cursor just passed.
 *
 * "Best" is highest priority, then oldest. Frames get task rows only when claimed, so
 * submitting a million frames costs the same as submitting ten.
 *
 * A node is given only work it can do: jobs whose tags it carries and whose device requirement
 * one of its backends meets (from its registration, see node-capabilities.ts), and tasks of the
 * kinds it said it runs. Stitch and video tasks need no render device, only the kind.
 */
import { MAX_WAIT_MS, type InputKind, type TaskAssignment } from '../protocol/schemas.ts';
import type { ClaimedTask } from './claim-redelivery.ts';
import { DEFAULT_MAX_CHUNK_FRAMES } from './env.ts';
import { carvedTaskSql, cursorAfterChunkSql, framesLeftSql } from './frame-order.ts';
import { storedTaskFramesSql, taskFrames } from './frame-ranges.ts';
import { expiredLeaseSql, RELEASE_COUNTS } from './lease-expiry.ts';
import { seenIsStale } from './workers-registry.ts';

const RUNNABLE = `('queued', 'running')`;

/** The shortest mean frame time an adaptive chunk is sized from, in ms (see CHUNK). */
const MIN_FRAME_MS = 1_000;

/** Jobs this worker may take at all: it is enabled, not blocklisted for the job, and carries the job's tags. `a` is the jobs alias, ?1 the worker id. */
const jobFits = (a: string) => `EXISTS (SELECT 1 FROM workers we WHERE we.id = ?1 AND we.enabled = 1)
  AND NOT EXISTS (SELECT 1 FROM job_blocklist b WHERE b.job_id = ${a}.id AND b.worker_id = ?1 AND b.failures >= ${a}.max_node_failures)
  AND (${a}.tags = '[]' OR NOT EXISTS (SELECT 1 FROM json_each(${a}.tags) jt
    WHERE jt.value NOT IN (SELECT wt.value FROM workers w, json_each(w.tags) wt WHERE w.id = ?1)))`;

/** The worker has a backend the job's device requirement accepts: `gpu` is any backend but the CPU. */
const deviceFits = (a: string) => `(${a}.device IN ('any', 'cpu') OR EXISTS (SELECT 1 FROM workers w, json_each(w.backends) wb
    WHERE w.id = ?1 AND (wb.value = ${a}.device OR (${a}.device = 'gpu' AND wb.value <> 'cpu'))))`;

/** Jobs whose frames this worker may render. */
const ELIGIBLE = `${jobFits('j')} AND ${deviceFits('j')}`;

/** Tasks of task `t` in job `j` this worker may run: renders and tiles need the device, other kinds the kind. */
const TASK_FITS = `${jobFits('j')}
  AND (t.kind IN ('stitch', 'video') OR ${deviceFits('j')})
  AND (t.kind = 'render' OR EXISTS (SELECT 1 FROM workers w, json_each(w.task_kinds) wk WHERE w.id = ?1 AND wk.value = t.kind))`;

/**
 * Frames per new task (D1 binds JS numbers as REAL, hence the casts to keep whole frames): the job's fixed chunk_size, or, when it has none, enough frames to last
 * about ?6 ms at the job's measured mean frame time, but never more than the remaining frames
 * divided by the nodes online, so that near the end every node gets a share, nor more than ?9
 * (MAX_CHUNK_FRAMES). The mean frame time used is at least MIN_FRAME_MS: a node that reports
 * frames rendered in no time (render_ms 0) must not size the next chunk at the whole job. The
 * nodes online are ?7 when the caller knows them, else counted here (enabled and online, see
 * onlineWindowMs), which saves the claim a round trip to D1.
 */
const CHUNK = `COALESCE(j.chunk_size,
  CASE WHEN j.frames_timed = 0 THEN 1
  ELSE CAST(MAX(1, MIN(CAST(?9 AS INTEGER),
                  CAST(?6 AS INTEGER) / MAX(${MIN_FRAME_MS}.0, CAST(j.frame_time_ms_total AS REAL) / j.frames_timed),
                  ${framesLeftSql('j')} / MAX(1, COALESCE(CAST(?7 AS INTEGER),
                    (SELECT COUNT(*) FROM workers w WHERE w.enabled = 1 AND w.last_seen_at >= ?2 - ?8 - ${MAX_WAIT_MS}))))) AS INTEGER) END)`;

/** The job columns a node's assignment carries (see buildAssignment). */
const ASSIGNMENT_JOB_COLUMNS = `name, blend_file, blend_sha256, blend_size, input_kind, main_blend, device, tiles, frame_ranges`;

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

interface AssignmentJobRow {
  name: string;
  blend_file: string;
  blend_sha256: string;
  blend_size: number;
  input_kind: InputKind;
  main_blend: string | null;
  device: TaskAssignment['device'];
  tiles: number | null;
  /** A frame list's stored ranges (edge/frame-ranges.ts); null: every frame. */
  frame_ranges: string | null;
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

interface LeaseRow extends ClaimedTask, AssignmentJobRow {
  lease_id: string;
  lease_expires_at: number;
  worker_id: string | null;
  task_status: string;
  job_status: string;
}

/**
 * Claims the next piece of work for a node, in one D1 batch that also marks the node as seen (at
 * most every half lease: a claim that finds nothing writes nothing) and,
 * when the node's claim id was used before (a retry whose answer was lost, see
 * claim-redelivery.ts), finds that claim again instead of making another.
 */
export async function claimTask(db: D1Database, opts: ClaimOptions): Promise<ClaimResult> {
  const leaseId = opts.leaseId ?? crypto.randomUUID();
  const taskId = crypto.randomUUID();
  const expires = opts.now + opts.leaseMs;
  const params = [opts.workerId, opts.now, leaseId, taskId, expires, opts.targetChunkMs, opts.activeNodes ?? null, opts.leaseMs,
    opts.maxChunkFrames ?? DEFAULT_MAX_CHUNK_FRAMES];
  // D1 wants exactly as many values as the highest ?N a statement uses.
  const bind = (sql: string) => {
    const highest = Math.max(...[...sql.matchAll(/\?(\d+)/g)].map((m) => Number(m[1])));
    return db.prepare(sql).bind(...params.slice(0, highest));
  };

  const carved = carvedTaskSql('jobs');
  const statements = [
    // Whether the node exists and may take work (the claims below require it to be enabled) ...
    bind(`SELECT enabled FROM workers WHERE id = ?1`),
    // ... and it is seen now, written only when the stored time is stale (half a lease old), so an
    // idle node's polls write nothing: an empty claim changes no row.
    bind(`UPDATE workers SET last_seen_at = ?2 WHERE ${seenIsStale('?1', '?2', '?8')}`),
    // 1. Leases that ran out on a task lost too often: the task fails, and so does its job (but a
    //    preview video's completes); the rule is shared with the cron (lease-expiry.ts).
    ...expiredLeaseSql('?2').map(bind),
    // 2. Re-lease a released or expired task, unless a job of higher priority has fresh frames;
    //    an expired lease counts as a node lost, not as an attempt (lease-expiry.ts).
    bind(`UPDATE tasks SET status = 'running', worker_id = ?1, lease_id = ?3, lease_expires_at = ?5,
            ${RELEASE_COUNTS}, updated_at = ?2, message = NULL, current_frame = NULL
          WHERE id = (
            SELECT t.id FROM tasks t JOIN jobs j ON j.id = t.job_id
            WHERE j.status IN ${RUNNABLE}
              AND (t.status = 'queued' OR (t.status = 'running' AND t.lease_expires_at < ?2))
              AND ${TASK_FITS}
              AND j.priority >= COALESCE((SELECT MAX(j2.priority) FROM jobs j2 WHERE j2.status IN ${RUNNABLE}
                    AND j2.next_frame <= j2.end_frame AND ${jobFits('j2')} AND ${deviceFits('j2')}), -1)
            ORDER BY j.priority DESC, j.created_at, t.start_frame LIMIT 1)
            -- A lease id names one claim: a node's claim_id already used (claim-redelivery.ts) is not reused.
            AND NOT EXISTS (SELECT 1 FROM tasks WHERE lease_id = ?3)
          RETURNING id, job_id, start_frame, end_frame, frame_step, attempts, kind, tile_index`),
    // 3. Otherwise carve the next chunk off the best job's cursor, in the job's order
    //    (edge/frame-order.ts); a frame list's cursor moves on by listed frames.
    bind(`UPDATE jobs SET claim_token = ?3, claim_start = next_frame,
            next_frame = ${cursorAfterChunkSql('jobs', `(SELECT ${CHUNK} FROM jobs j WHERE j.id = jobs.id)`)},
            status = 'running', started_at = COALESCE(started_at, ?2), updated_at = ?2
          WHERE id = (
            SELECT j.id FROM jobs j WHERE j.status IN ${RUNNABLE} AND j.next_frame <= j.end_frame AND ${ELIGIBLE}
            ORDER BY j.priority DESC, j.created_at LIMIT 1)
            AND NOT EXISTS (SELECT 1 FROM tasks WHERE lease_id = ?3)`),
    // 4. The task for that chunk.
    bind(`INSERT INTO tasks (id, job_id, start_frame, end_frame, frame_step, status, worker_id, lease_id, lease_expires_at,
            attempts, created_at, updated_at)
          SELECT ?4, id, ${carved.start}, ${carved.end}, ${carved.step}, 'running', ?1, ?3, ?5, 1, ?2, ?2 FROM jobs WHERE claim_token = ?3
            -- A claim id used before left its token on that job: only a new carve inserts.
            AND NOT EXISTS (SELECT 1 FROM tasks WHERE lease_id = ?3)
          RETURNING id, job_id, start_frame, end_frame, frame_step, attempts, kind, tile_index`),
    // A re-leased task's job is running again (it may have been queued after a requeue).
    bind(`UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, ?2), updated_at = ?2
          WHERE status = 'queued' AND id = (SELECT job_id FROM tasks WHERE lease_id = ?3)`),
    // What the node's assignment needs, read in the same transaction (see describeClaim).
    bind(`SELECT t.id, t.job_id, t.start_frame, t.end_frame, t.frame_step, t.attempts, t.kind, t.tile_index, t.worker_id, t.lease_id,
            t.lease_expires_at, t.status AS task_status, j.status AS job_status,
            ${ASSIGNMENT_JOB_COLUMNS.split(', ').map((c) => `j.${c}`).join(', ')}
          FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE t.lease_id = ?3`),
    bind(`WITH t AS (SELECT * FROM tasks WHERE lease_id = ?3) ${storedTaskFramesSql('t', 'f.frame', 't')}`),
  ];
  const results = await db.batch<ClaimedRow>(statements);
  const jobsEnded = (results[2]!.meta.changes ?? 0) + (results[3]!.meta.changes ?? 0) > 0;
  const worker = results[0]!.results[0] as unknown as { enabled: number } | undefined;
  if (!worker) return { outcome: 'unknown_worker', jobsEnded };
  if (!worker.enabled) return { outcome: 'disabled', jobsEnded };
  const made = (results[5]!.results[0] ?? results[7]!.results[0]) as ClaimedTask | undefined;
  const row = results[9]!.results[0] as unknown as LeaseRow | undefined;
  if (!row) return { outcome: 'none', jobsEnded };
  if (!made) {
    // Nothing new was claimed, but the lease id names a task: this node's earlier claim, if still live.
    const live =
      row.worker_id === opts.workerId && row.task_status === 'running' && row.lease_expires_at >= opts.now &&
      (row.job_status === 'queued' || row.job_status === 'running');
    if (!live) return { outcome: 'claim_id_used', jobsEnded };
  }
  const { id, job_id, start_frame, end_frame, frame_step, attempts, kind, tile_index, lease_expires_at, name, blend_file, blend_sha256, blend_size, input_kind, main_blend, device, tiles, frame_ranges } = row;
  const uploadedFrames = (results[10]!.results as unknown as { frame: number }[]).map((r) => r.frame);
  return {
    outcome: 'claimed',
    jobsEnded,
    redelivered: !made,
    claimed: {
      id, job_id, start_frame, end_frame, frame_step, attempts, kind, tile_index,
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
