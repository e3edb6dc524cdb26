/**
 * Frame lists: `1-100`, `1-100x5` (every 5th frame), `1,5,10-20`. One parser for the master, the
 * CLI and the add-on's API calls. A list is kept as ranges with steps, never as frames, so a
 * million-frame list costs what ten do. Nothing here may depend on Workers or Node APIs, nor on
 * zod: the dashboard's browser script bundles this file.
 */

/**
 * Frame numbers a render node can ask Blender for: MAXFRAME is 1,048,574, and the command line
 * reads `-f -5` as "5 before the end", so negative frames cannot be rendered headless.
 */
export const FRAME_MIN = 0;
export const FRAME_MAX = 1_048_574;

/** `[start, end, step]`: the frames start, start + step, ... up to end, which is itself a frame of the range. */
export type FrameRange = readonly [start: number, end: number, step: number];

/** The most ranges one list may have: a list is a handful of ranges, not a way to send every frame. */
export const MAX_FRAME_RANGES = 1_000;

/** The longest frame list text accepted, in characters (MAX_FRAME_RANGES ranges of two 7-digit frames and a step). */
const MAX_FRAME_LIST_CHARS = 24_000;

const ITEM = /^(\d+)(?:-(\d+)(?:x(\d+))?)?$/;

/**
 * Parses a frame list into ranges sorted by frame, each ending on its own last frame (`1-10x4`
 * becomes `[1, 9, 4]`). Overlapping ranges are refused, not merged: `1-10,5-20` is most likely a
 * typo, and a frame listed twice would be rendered once anyway. Throws an Error whose message
 * says what was wrong and how to write it.
 */
export function parseFrameList(text: string): FrameRange[] {
  if (text.length > MAX_FRAME_LIST_CHARS) throw new Error(`the frame list is longer than ${MAX_FRAME_LIST_CHARS} characters`);
  const items = text.split(',').map((s) => s.trim());
  if (items.length > MAX_FRAME_RANGES)
    throw new Error(`the frame list has ${items.length} ranges, over the limit of ${MAX_FRAME_RANGES}: use steps (1-100x5) instead of listing frames`);
  const ranges: FrameRange[] = [];
  for (const item of items) {
    if (item === '') throw new Error(`the frame list "${text}" has an empty item: write frames like 1-100, 1-100x5 or 1,5,10-20`);
    const m = ITEM.exec(item);
    if (!m) throw new Error(`"${item}" is not a frame, a range (10-20) or a stepped range (1-100x5)`);
    const start = Number(m[1]);
    const last = m[2] === undefined ? start : Number(m[2]);
    const step = m[3] === undefined ? 1 : Number(m[3]);
    for (const n of [start, last]) {
      if (n < FRAME_MIN || n > FRAME_MAX) throw new Error(`frame ${n} in "${item}" is outside ${FRAME_MIN}-${FRAME_MAX}`);
    }
    if (last < start) throw new Error(`"${item}" counts down: write the lower frame first (${last}-${start})`);
    if (step < 1) throw new Error(`"${item}" has step 0: the step must be 1 or more`);
    ranges.push([start, start + Math.floor((last - start) / step) * step, step]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++) {
    const [prev, next] = [ranges[i - 1]!, ranges[i]!];
    if (next[0] <= prev[1]) {
      throw new Error(`${formatFrameList([prev])} and ${formatFrameList([next])} overlap: list each frame once`);
    }
  }
  return ranges;
}

/** The number of frames of a range. */
export const rangeFrameCount = ([start, end, step]: FrameRange): number => (end - start) / step + 1;

/** The number of frames a list renders. */
export function countFrames(ranges: readonly FrameRange[]): number {
  return ranges.reduce((sum, r) => sum + rangeFrameCount(r), 0);
}

/** Writes ranges back as a frame list (`1-9x4,12`). */
export function formatFrameList(ranges: readonly FrameRange[]): string {
  return ranges.map(([start, end, step]) => (start === end ? `${start}` : step === 1 ? `${start}-${end}` : `${start}-${end}x${step}`)).join(',');
}

/** Whether the list has only one range of consecutive frames: such a job is a plain start-end job. */
export function isPlainRange(ranges: readonly FrameRange[]): boolean {
  return ranges.length === 1 && (ranges[0]![2] === 1 || ranges[0]![0] === ranges[0]![1]);
}

/** Whether `frame` is one of the list's frames. */
export function isListedFrame(ranges: readonly FrameRange[], frame: number): boolean {
  return ranges.some(([start, end, step]) => frame >= start && frame <= end && (frame - start) % step === 0);
}

/**
 * Which of a job's frames a task renders: every frame_step-th of them (of a frame list, of its
 * listed frames) from start_frame to end_frame, both among them. frame_step is 1 but for the
 * tasks of a progressive job (edge/frame-order.ts).
 */
export interface TaskSpan {
  start_frame: number;
  end_frame: number;
  frame_step: number;
}

/**
 * The frames task `task` of a job with frames `ranges` renders, in order. The one rule for a
 * task's frames: the master's SQL follows it (edge/frame-ranges.ts storedTaskFramesSql).
 */
export function framesOfTask(ranges: readonly FrameRange[], task: TaskSpan): number[] {
  const frames: number[] = [];
  // Listed frames still to pass over, from the start of the next range, before the task's next frame.
  let gap = 0;
  for (const [start, end, step] of ranges) {
    if (end < task.start_frame) continue;
    let f = Math.max(start, task.start_frame) + gap * step;
    for (; f <= Math.min(end, task.end_frame); f += task.frame_step * step) frames.push(f);
    if (end >= task.end_frame) break;
    gap = (f - end) / step - 1;
  }
  return frames;
}

/** Whether `frame` is one of the frames task `task` renders (see framesOfTask). */
export function isFrameOfTask(ranges: readonly FrameRange[], task: TaskSpan, frame: number): boolean {
  if (frame < task.start_frame || frame > task.end_frame || !isListedFrame(ranges, frame)) return false;
  return (positionOf(ranges, frame) - positionOf(ranges, task.start_frame)) % task.frame_step === 0;
}

/** The position (from 0) of listed frame `frame` among the list's frames. */
function positionOf(ranges: readonly FrameRange[], frame: number): number {
  let before = 0;
  for (const range of ranges) {
    if (frame <= range[1]) return before + (frame - range[0]) / range[2];
    before += rangeFrameCount(range);
  }
  return before;
}
