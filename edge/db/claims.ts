/**
 * The claim: handing out work in one D1 batch (a single transaction), so two nodes can never be
 * given the same frames (edge/scheduler.ts says how the result is used):
 *
 *  1. expired leases of tasks that lost their node max_node_losses times in a row fail those
 *     tasks (and their jobs, but for a preview video's: that job completes without its video),
 *     the state machine's rule (state-machine.ts lostNodeStatements);
 *  2. otherwise-claimable tasks (released, or leased but expired) are re-leased, best job first;
 *  3. if nothing was re-leased, the best job's frame cursor is advanced by one chunk and
 *  4. a task row is inserted for the range the cursor just passed.
 *
 * "Best" is highest priority, then oldest. Frames get task rows only when claimed, so
 * submitting a million frames costs the same as submitting ten.
 *
 * A node is given only work it can do: jobs whose tags it carries and whose device requirement
 * one of its backends meets (from its registration, see node-capabilities.ts), and tasks of the
 * kinds it said it runs. Stitch and video tasks need no render device, only the kind.
 */
import { sql } from 'drizzle-orm';
import { MAX_WAIT_MS, type InputKind, type TaskAssignment, type TaskKind } from '../../protocol/schemas.ts';
import { carvedTaskSql, cursorAfterChunkSql, framesLeftSql } from '../frame-order.ts';
import { storedTaskFramesSql } from '../frame-ranges.ts';
import { all, around, get, names, openDb, run } from './client.ts';
import { jobsEndedBy, jobState, lostNodeStatements, RELEASE_COUNTS, RUNNABLE, statusIn, taskKind, taskState, type StoredJobStatus } from './state-machine.ts';
import { touchStatements } from './workers.ts';

/** The shortest mean frame time an adaptive chunk is sized from, in ms (see chunk). */
const MIN_FRAME_MS = 1_000;

export interface ClaimParams {
  workerId: string;
  now: number;
  leaseMs: number;
  /** The new lease's id. */
  leaseId: string;
  /** The id of a task the claim inserts. */
  taskId: string;
  /** Target wall time of one adaptive chunk. */
  targetChunkMs: number;
  /** Most frames in one adaptive chunk. */
  maxChunkFrames: number;
  /** How many nodes share the work; null: counted by the claim. */
  activeNodes: number | null;
}

/** What a task of a claim is; the columns its RETURNING and the lease read share. */
export interface ClaimedTask {
  id: string;
  job_id: string;
  start_frame: number;
  end_frame: number;
  /** See tasks.frame_step (edge/frame-ranges.ts taskFrames). */
  frame_step: number;
  attempts: number;
  kind: TaskKind;
  tile_index: number | null;
}

export interface AssignmentJobRow {
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

/** The task the lease id names, with its job's columns an assignment carries. */
interface LeaseRow extends ClaimedTask, AssignmentJobRow {
  lease_id: string;
  lease_expires_at: number;
  worker_id: string | null;
  task_status: string;
  job_status: StoredJobStatus;
}

/** Jobs worker `w` may take at all: it is enabled, not blocklisted for the job, and carries the job's tags. `a` is the jobs alias. */
const jobFits = (a: string, w: string) => {
  const job = sql.raw(a);
  return sql`EXISTS (SELECT 1 FROM workers we WHERE we.id = ${w} AND we.enabled = 1)
  AND NOT EXISTS (SELECT 1 FROM job_blocklist b WHERE b.job_id = ${job}.id AND b.worker_id = ${w} AND b.failures >= ${job}.max_node_failures)
  AND (${job}.tags = '[]' OR NOT EXISTS (SELECT 1 FROM json_each(${job}.tags) jt
    WHERE jt.value NOT IN (SELECT wt.value FROM workers w, json_each(w.tags) wt WHERE w.id = ${w})))`;
};

/** Worker `w` has a backend the job's device requirement accepts: `gpu` is any backend but the CPU. */
const deviceFits = (a: string, w: string) => {
  const job = sql.raw(a);
  return sql`(${job}.device IN ('any', 'cpu') OR EXISTS (SELECT 1 FROM workers w, json_each(w.backends) wb
    WHERE w.id = ${w} AND (wb.value = ${job}.device OR (${job}.device = 'gpu' AND wb.value <> 'cpu'))))`;
};

/** Task `t` of job `j` worker `w` may run: renders and tiles need the device, other kinds the kind. */
const taskFits = (w: string) => sql`${jobFits('j', w)}
  AND (t.kind IN ${names(['stitch', 'video'] satisfies TaskKind[])} OR ${deviceFits('j', w)})
  AND (t.kind = ${taskKind('render')} OR EXISTS (SELECT 1 FROM workers w, json_each(w.task_kinds) wk WHERE w.id = ${w} AND wk.value = t.kind))`;

/**
 * Frames per new task of job `j` (D1 binds JS numbers as REAL, hence the casts to keep whole
 * frames): the job's fixed chunk_size, or, when it has none, enough frames to last about
 * targetChunkMs at the job's measured mean frame time, but never more than the remaining frames
 * divided by the nodes online, so that near the end every node gets a share, nor more than
 * maxChunkFrames. The mean frame time used is at least MIN_FRAME_MS: a node that reports frames
 * rendered in no time (render_ms 0) must not size the next chunk at the whole job. The nodes
 * online are activeNodes when the caller knows them, else counted here (enabled and online, see
 * onlineWindowMs), which saves the claim a round trip to D1.
 */
const chunk = (p: ClaimParams) => sql`COALESCE(j.chunk_size,
  CASE WHEN j.frames_timed = 0 THEN 1
  ELSE CAST(MAX(1, MIN(CAST(${p.maxChunkFrames} AS INTEGER),
                  CAST(${p.targetChunkMs} AS INTEGER) / MAX(${sql.raw(String(MIN_FRAME_MS))}.0, CAST(j.frame_time_ms_total AS REAL) / j.frames_timed),
                  ${sql.raw(framesLeftSql('j'))} / MAX(1, COALESCE(CAST(${p.activeNodes} AS INTEGER),
                    (SELECT COUNT(*) FROM workers w WHERE w.enabled = 1 AND w.last_seen_at >= ${p.now} - ${p.leaseMs} - ${sql.raw(String(MAX_WAIT_MS))}))))) AS INTEGER) END)`;

const CLAIMED_COLUMNS = sql.raw('id, job_id, start_frame, end_frame, frame_step, attempts, kind, tile_index');

/** The job columns a node's assignment carries (see describeClaim). */
const ASSIGNMENT_JOB_COLUMNS = ['name', 'blend_file', 'blend_sha256', 'blend_size', 'input_kind', 'main_blend', 'device', 'tiles', 'frame_ranges'];

export interface ClaimRows {
  /** The node (undefined: unknown); the claims require it enabled. */
  worker: { enabled: number } | undefined;
  /** How many jobs the batch ended (leases that ran out on a last node loss): their webhooks are due. */
  jobsEnded: number;
  /** The task this claim re-leased or made; undefined: none (the lease id may name an earlier claim). */
  made: ClaimedTask | undefined;
  /** The task the lease id names, whoever claimed it. */
  lease: LeaseRow | undefined;
  /** The frames that task has stored already. */
  uploadedFrames: number[];
}

/**
 * Runs a claim (see the top of this file) in one batch that also marks the node as seen (once per
 * lease: a claim that finds nothing writes nothing). A lease id names one claim: when it was used
 * before (the node's claim_id of a retry whose answer was lost, see claim-redelivery.ts), nothing
 * new is claimed, and the batch reads what it names.
 */
export async function runClaim(d1: D1Database, p: ClaimParams): Promise<ClaimRows> {
  const db = openDb(d1);
  const w = p.workerId;
  const expires = p.now + p.leaseMs;
  const leaseUnused = sql`NOT EXISTS (SELECT 1 FROM tasks WHERE lease_id = ${p.leaseId})`;
  const carved = carvedTaskSql('jobs');
  const [worker, , failed, completed, tasksFailed, released, , inserted, , lease, uploaded] = await db.batch([
    // Whether the node exists and may take work, and it is seen now.
    ...touchStatements(db, w, p.now, p.leaseMs),
    // 1. Leases that ran out on a task lost too often.
    ...lostNodeStatements(db, p.now),
    // 2. Re-lease a released or expired task, unless a job of higher priority has fresh frames;
    //    an expired lease counts as a node lost, not as an attempt (RELEASE_COUNTS). A job's tasks
    //    go again in the order they were first handed out (rowid: task rows are inserted as they
    //    are carved), which is frame order for a sequential job and pass order for a progressive one.
    all<ClaimedTask>(
      db,
      sql`UPDATE tasks SET status = ${taskState('running')}, worker_id = ${w}, lease_id = ${p.leaseId}, lease_expires_at = ${expires},
            ${RELEASE_COUNTS}, updated_at = ${p.now}, message = NULL, current_frame = NULL
          WHERE id = (
            SELECT t.id FROM tasks t JOIN jobs j ON j.id = t.job_id
            WHERE ${statusIn('j', RUNNABLE)}
              AND (t.status = ${taskState('queued')} OR (t.status = ${taskState('running')} AND t.lease_expires_at < ${p.now}))
              AND ${taskFits(w)}
              AND j.priority >= COALESCE((SELECT MAX(j2.priority) FROM jobs j2 WHERE ${statusIn('j2', RUNNABLE)}
                    AND j2.next_frame <= j2.end_frame AND ${jobFits('j2', w)} AND ${deviceFits('j2', w)}), -1)
            ORDER BY j.priority DESC, j.created_at, t.rowid LIMIT 1)
            AND ${leaseUnused}
          RETURNING ${CLAIMED_COLUMNS}`,
    ),
    // 3. Otherwise carve the next chunk off the best job's cursor, in the job's order
    //    (edge/frame-order.ts); a frame list's cursor moves on by listed frames.
    run(
      db,
      sql`UPDATE jobs SET claim_token = ${p.leaseId}, claim_start = next_frame,
            next_frame = ${around((count) => cursorAfterChunkSql('jobs', count), sql`(SELECT ${chunk(p)} FROM jobs j WHERE j.id = jobs.id)`)},
            status = ${jobState('running')}, started_at = COALESCE(started_at, ${p.now}), updated_at = ${p.now}
          WHERE id = (
            SELECT j.id FROM jobs j WHERE ${statusIn('j', RUNNABLE)} AND j.next_frame <= j.end_frame AND ${jobFits('j', w)} AND ${deviceFits('j', w)}
            ORDER BY j.priority DESC, j.created_at LIMIT 1)
            AND ${leaseUnused}`,
    ),
    // 4. The task for that chunk; a claim id used before left its token on that job: only a new carve inserts.
    all<ClaimedTask>(
      db,
      sql`INSERT INTO tasks (id, job_id, start_frame, end_frame, frame_step, status, worker_id, lease_id, lease_expires_at,
            attempts, created_at, updated_at)
          SELECT ${p.taskId}, id, ${sql.raw(carved.start)}, ${sql.raw(carved.end)}, ${sql.raw(carved.step)}, ${taskState('running')}, ${w}, ${p.leaseId},
            ${expires}, 1, ${p.now}, ${p.now} FROM jobs WHERE claim_token = ${p.leaseId}
            AND ${leaseUnused}
          RETURNING ${CLAIMED_COLUMNS}`,
    ),
    // A re-leased task's job is running again (it may have been queued after a requeue).
    run(
      db,
      sql`UPDATE jobs SET status = ${jobState('running')}, started_at = COALESCE(started_at, ${p.now}), updated_at = ${p.now}
          WHERE status = ${jobState('queued')} AND id = (SELECT job_id FROM tasks WHERE lease_id = ${p.leaseId})`,
    ),
    // What the node's assignment needs, read in the same transaction (see describeClaim).
    get<LeaseRow>(
      db,
      sql`SELECT t.id, t.job_id, t.start_frame, t.end_frame, t.frame_step, t.attempts, t.kind, t.tile_index, t.worker_id, t.lease_id,
            t.lease_expires_at, t.status AS task_status, j.status AS job_status, ${sql.raw(ASSIGNMENT_JOB_COLUMNS.map((c) => `j.${c}`).join(', '))}
          FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE t.lease_id = ${p.leaseId}`,
    ),
    all<{ frame: number }>(db, sql`WITH t AS (SELECT * FROM tasks WHERE lease_id = ${p.leaseId}) ${sql.raw(storedTaskFramesSql('t', 'f.frame', 't'))}`),
  ]);
  return {
    worker,
    jobsEnded: jobsEndedBy([failed, completed, tasksFailed]),
    made: released[0] ?? inserted[0],
    lease,
    uploadedFrames: uploaded.map((r) => r.frame),
  };
}
