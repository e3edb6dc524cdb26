/**
 * A job's frames as the master stores them. A plain job (start_frame to end_frame, every frame)
 * has `frame_ranges` NULL and is handled exactly as before frame lists existed. A job submitted
 * with a frame list (protocol/frame-list.ts) stores its ranges as JSON
 * `[[start, end, step, first_index], ...]`, sorted and disjoint, where `first_index` is the
 * position of `start` in the whole list: the claim maps between frames and positions in the list
 * with one indexed lookup, so a million listed frames cost what ten do.
 *
 * Its start_frame and end_frame are the list's first and last frames, and in sequential order
 * `next_frame` is still a frame (the first listed frame no task has covered yet, end_frame + 1
 * when all are handed out; for progressive order see edge/frame-order.ts). A task renders every
 * frame_step-th listed frame from its start_frame to its end_frame, both listed
 * (protocol/frame-list.ts framesOfTask).
 */
import { countFrames, framesOfTask, isFrameOfTask, isPlainRange, rangeFrameCount, type FrameRange, type TaskSpan } from '../protocol/frame-list.ts';
import { jobFrameRanges } from '../protocol/schemas.ts';
import { fail } from './errors.ts';

/** The frames of a new job, as the job row stores them. */
export interface JobFrames {
  startFrame: number;
  endFrame: number;
  /** The `frame_ranges` column: null for a plain start-end job. */
  frameRanges: string | null;
  totalFrames: number;
}

/**
 * Resolves a submission's `frames` or start_frame/end_frame (checked by the schema) into the job
 * row's columns, and answers 413 over MAX_FRAMES_PER_JOB.
 */
export function newJobFrames(fields: { start_frame?: number; end_frame?: number; frames?: FrameRange[] }, maxFramesPerJob: number): JobFrames {
  const ranges = jobFrameRanges(fields);
  const totalFrames = countFrames(ranges);
  if (totalFrames > maxFramesPerJob) {
    fail(413, `the job has ${totalFrames} frames, over the limit of ${maxFramesPerJob} per job (MAX_FRAMES_PER_JOB)`);
  }
  let index = 0;
  const stored = ranges.map((r) => {
    const row = [...r, index];
    index += rangeFrameCount(r);
    return row;
  });
  return {
    startFrame: ranges[0]![0],
    endFrame: ranges.at(-1)![1],
    frameRanges: isPlainRange(ranges) ? null : JSON.stringify(stored),
    totalFrames,
  };
}

/** A job row's frames as ranges. */
export function jobRowRanges(job: { start_frame: number; end_frame: number; frame_ranges: string | null }): FrameRange[] {
  if (job.frame_ranges === null) return [[job.start_frame, job.end_frame, 1]];
  return (JSON.parse(job.frame_ranges) as number[][]).map(([start, end, step]) => [start!, end!, step!] as const);
}

/** The frames of task `task` of a job whose frame_ranges column is `frameRanges` (protocol/frame-list.ts framesOfTask). */
export function taskFrames(frameRanges: string | null, task: TaskSpan): number[] {
  return framesOfTask(jobRowRanges({ ...task, frame_ranges: frameRanges }), task);
}

/** Whether `frame` is one of the frames task `task` renders (see taskFrames). */
export function isTaskFrame(frameRanges: string | null, task: TaskSpan, frame: number): boolean {
  return isFrameOfTask(jobRowRanges({ ...task, frame_ranges: frameRanges }), task, frame);
}

const part = (i: number) => `json_extract(r.value, '$[${i}]')`;

/**
 * SQL: how many listed frames of list job `job` (a jobs alias) come before frame `frame`, that is
 * the list position of a listed frame, or the frame count for end_frame + 1.
 */
const listedBefore = (job: string, frame: string) =>
  `COALESCE((SELECT ${part(3)} + (MIN(${frame}, ${part(1)} + 1) - ${part(0)} + ${part(2)} - 1) / ${part(2)}
    FROM json_each(${job}.frame_ranges) r WHERE ${part(0)} <= ${frame} ORDER BY r.key DESC LIMIT 1), 0)`;

/**
 * SQL: the frame at list position `index` (from 0) of list job `job`; past the list's end, a frame
 * past end_frame (the last range carried on), so `MIN(end_frame + 1, ...)` caps it.
 */
const frameAt = (job: string, index: string) =>
  `(SELECT ${part(0)} + (${index} - ${part(3)}) * ${part(2)}
    FROM json_each(${job}.frame_ranges) r WHERE ${part(3)} <= ${index} ORDER BY r.key DESC LIMIT 1)`;

/** SQL: how many of job `job`'s frames lie from `from` to `to` (both included). */
export const framesListedSql = (job: string, from: string, to: string) =>
  `(CASE WHEN ${job}.frame_ranges IS NULL THEN ${to} - ${from} + 1
    ELSE ${listedBefore(job, `${to} + 1`)} - ${listedBefore(job, from)} END)`;

/**
 * SQL: where job `job`'s cursor goes after handing out `count` more frames: `count` listed
 * frames on, capped at end_frame + 1 (all handed out).
 */
export const cursorAfterSql = (job: string, count: string) =>
  `MIN(${job}.end_frame + 1, CASE WHEN ${job}.frame_ranges IS NULL THEN ${job}.next_frame + ${count}
    ELSE ${frameAt(job, `${listedBefore(job, `${job}.next_frame`)} + ${count}`)} END)`;

/** SQL: the last listed frame of job `job` before its cursor: the end of the chunk just carved. */
export const lastBeforeCursorSql = (job: string) =>
  `(CASE WHEN ${job}.frame_ranges IS NULL THEN ${job}.next_frame - 1
    ELSE ${frameAt(job, `${listedBefore(job, `${job}.next_frame`)} - 1`)} END)`;

/** SQL: the position of job `job`'s frame `frame` among its frames (from 0). */
const indexOfSql = (job: string, frame: string) =>
  `(CASE WHEN ${job}.frame_ranges IS NULL THEN ${frame} - ${job}.start_frame ELSE ${listedBefore(job, frame)} END)`;

/** SQL: job `job`'s frame at position `index` among its frames. */
export const frameOfSql = (job: string, index: string) =>
  `(CASE WHEN ${job}.frame_ranges IS NULL THEN ${job}.start_frame + ${index} ELSE ${frameAt(job, index)} END)`;

/** SQL: how many frames task `task` of job `job` renders (protocol/frame-list.ts framesOfTask). */
export const taskFrameCountSql = (task: string, job: string) =>
  `((${indexOfSql(job, `${task}.end_frame`)} - ${indexOfSql(job, `${task}.start_frame`)}) / ${task}.frame_step + 1)`;

/**
 * SQL: the rows of `frames` (alias f) stored for task `task` (a tasks alias of the enclosing
 * query, or the table `from`, e.g. a CTE, which the SELECT then reads), selecting `columns`.
 * A task of consecutive frames reads its span of the frames index; a stepped one (progressive
 * order) looks its frames up one by one, so what it reads stays its own frames, however far
 * apart they lie.
 */
export const storedTaskFramesSql = (task: string, columns: string, from?: string) =>
  `SELECT ${columns} FROM ${from ? `${from}, ` : ''}frames f WHERE f.job_id = ${task}.job_id AND ${task}.frame_step = 1
     AND f.frame BETWEEN ${task}.start_frame AND ${task}.end_frame
   UNION ALL
   SELECT ${columns} FROM ${from ? `${from}, ` : ''}frames f WHERE f.job_id = ${task}.job_id AND ${task}.frame_step > 1 AND f.frame IN (
     WITH RECURSIVE tj AS (SELECT * FROM jobs WHERE id = ${task}.job_id),
       b(lo, hi) AS (SELECT ${indexOfSql('tj', `${task}.start_frame`)}, ${indexOfSql('tj', `${task}.end_frame`)} FROM tj),
       m(i) AS (SELECT lo FROM b UNION ALL SELECT i + ${task}.frame_step FROM m, b WHERE i + ${task}.frame_step <= b.hi)
     SELECT ${frameOfSql('tj', 'm.i')} FROM m, tj)`;

/** SQL: task `task`'s frames for messages: `frames 1-9`, or for a stepped task `frames 1-9 (step 4 through the job's frames)`. */
export const taskFramesLabelSql = (task: string) =>
  `('frames ' || ${task}.start_frame || '-' || ${task}.end_frame
    || CASE WHEN ${task}.frame_step > 1 THEN ' (step ' || ${task}.frame_step || ' through the job''s frames)' ELSE '' END)`;
