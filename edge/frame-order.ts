/**
 * The order a job's frames are handed out in (FRAME_ORDERS, the job's `frame_order`).
 *
 * `sequential`: in order; the cursor `next_frame` is the first frame no task has covered yet
 * (edge/frame-ranges.ts).
 *
 * `progressive`: the whole shot in rough form first, then finer and finer. With the job's frames
 * at positions 0 to L (of a frame list, its listed frames) and c = floor(L / 2) the middle, the
 * first pass is the first and the last frame, the second the middle one, and then, for
 * d = 2^k, 2^(k-1), ..., 1, a pass of the positions c + d * j (j odd) strictly between 0 and L.
 * Nine frames go out as 0, 8 | 4 | 2, 6 | 1, 3, 5, 7; a hundred as 0, 99 | 49 | 17, 81 | 1, 33,
 * 65, 97 | ... Every position is in exactly one pass (d is the largest power of two dividing its
 * distance from the middle), and a pass's positions are evenly spaced (2d apart), so a task (a
 * run of one pass's positions: chunks are sized as for sequential jobs, but never cross into
 * the next pass) is its first and last frame and a step (tasks.frame_step, see framesOfTask), and
 * the cursor is one number: for a progressive job `next_frame` is end_frame + 1 less the frames
 * not handed out yet, so that `next_frame <= end_frame` means "frames are left" in both orders
 * and a million frames still cost one job row.
 */
import type { FrameOrder } from '../protocol/schemas.ts';
import { cursorAfterSql, frameOfSql, framesListedSql, lastBeforeCursorSql, type JobFrames } from './frame-ranges.ts';

/** The cursor of a new job (its `next_frame`). */
export function firstCursor(order: FrameOrder, frames: Pick<JobFrames, 'startFrame' | 'endFrame' | 'totalFrames'>): number {
  return order === 'progressive' ? frames.endFrame + 1 - frames.totalFrames : frames.startFrame;
}

const progressive = (job: string) => `${job}.frame_order = 'progressive'`;

/** SQL: how many frames job `job` has. */
const frameCount = (job: string) => framesListedSql(job, `${job}.start_frame`, `${job}.end_frame`);

/** SQL: the position in the progressive order that the cursor value `cursor` of job `job` stands for. */
const position = (job: string, cursor: string) => `(${cursor} - ${job}.end_frame - 1 + ${frameCount(job)})`;

/**
 * SQL: about position `pos` in the progressive order of a job of `n` frames, `what` of:
 * p (the position), idx (the position among the job's frames of the frame handed out there),
 * step (between the positions among the job's frames of its pass) and pass_end (the position
 * after its pass). Before the pass of spacing d come 3 + floor((c - 1) / 2d) + floor((L - c - 1) / 2d)
 * positions (the first, last and middle frames, and the nonzero multiples of 2d around the middle),
 * so a position's pass is that of the smallest e = 2d with no more before it.
 */
const passSql = (n: string, pos: string, what: string) => `(WITH RECURSIVE
    k(p, l, c) AS (SELECT ${pos}, ${n} - 1, (${n} - 1) / 2),
    g(e) AS (SELECT 2 UNION ALL SELECT e * 2 FROM g, k WHERE k.p >= 3 AND 3 + (k.c - 1) / e + (k.l - k.c - 1) / e > k.p),
    x(p, l, c, e, d) AS (SELECT p, l, c, e, e / 2 FROM k, (SELECT MAX(e) AS e FROM g)),
    q(p, idx, step, pass_end) AS (SELECT p,
      CASE WHEN p < 2 THEN p * l WHEN p = 2 THEN c
        ELSE c - d * (2 * ((c - 1 + d) / e) - 1) + e * (p - 3 - (c - 1) / e - (l - c - 1) / e) END,
      CASE WHEN p < 2 THEN MAX(1, l) WHEN p = 2 THEN 1 ELSE e END,
      CASE WHEN p < 2 THEN MIN(l + 1, 2) WHEN p = 2 THEN 3 ELSE 3 + (c - 1) / d + (l - c - 1) / d END
    FROM x)
  SELECT ${what} FROM q)`;

/** SQL: `what` (see passSql) of the pass holding the frame the cursor value `cursor` of progressive job `job` stands for. */
const atCursor = (job: string, cursor: string, what: string) => passSql(frameCount(job), position(job, cursor), what);

/** SQL: how many of job `job`'s frames no task has covered yet. */
export const framesLeftSql = (job: string) =>
  `(CASE WHEN ${progressive(job)} THEN ${job}.end_frame + 1 - ${job}.next_frame
    ELSE ${framesListedSql(job, `${job}.next_frame`, `${job}.end_frame`)} END)`;

/**
 * SQL: where job `job`'s cursor goes after handing out up to `count` more frames: `count` on,
 * but for a progressive job no further than the end of the current pass.
 */
export const cursorAfterChunkSql = (job: string, count: string) =>
  `(CASE WHEN ${progressive(job)} THEN ${job}.next_frame + MIN(${count}, ${atCursor(job, `${job}.next_frame`, 'pass_end - p')})
    ELSE ${cursorAfterSql(job, count)} END)`;

/**
 * SQL: the task for the chunk job `job` just carved, from its `claim_start` (the cursor before)
 * to its `next_frame` (the cursor after): its start_frame, end_frame and frame_step.
 */
export function carvedTaskSql(job: string): { start: string; end: string; step: string } {
  return {
    start: `(CASE WHEN ${progressive(job)} THEN ${frameOfSql(job, atCursor(job, `${job}.claim_start`, 'idx'))} ELSE ${job}.claim_start END)`,
    end: `(CASE WHEN ${progressive(job)} THEN ${frameOfSql(job, atCursor(job, `${job}.next_frame - 1`, 'idx'))}
      ELSE ${lastBeforeCursorSql(job)} END)`,
    step: `(CASE WHEN ${progressive(job)} THEN ${atCursor(job, `${job}.claim_start`, 'step')} ELSE 1 END)`,
  };
}
