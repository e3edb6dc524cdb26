/**
 * The frame grid's pages. A job renders the frames of its list (`1-100x5`, `1,5,10-20`) or every
 * frame from start to end; the grid shows those frames only, GRID_PAGE to a page, so its pages
 * count listed frames (the job's total_frames), never the span between the first and the last.
 */
import type { JobStatusResponse } from '../../protocol/schemas.ts';
import { parseFrameList, rangeFrameCount, type FrameRange } from '../../protocol/frame-list.ts';

/** Frames shown per page of the job's grid. */
export const GRID_PAGE = 500;

/** The job's frames as ranges: its frame list, else start to end. */
export function jobRanges(job: Pick<JobStatusResponse, 'frames' | 'start_frame' | 'end_frame'>): FrameRange[] {
  return job.frames ? parseFrameList(job.frames) : [[job.start_frame, job.end_frame, 1]];
}

/** The listed frames of page `page` (from 0): at most `size`, after the first `page * size`. */
export function pageFrames(ranges: readonly FrameRange[], page: number, size = GRID_PAGE): number[] {
  let skip = page * size;
  const frames: number[] = [];
  for (const range of ranges) {
    const count = rangeFrameCount(range);
    if (skip >= count) {
      skip -= count;
      continue;
    }
    const [start, , step] = range;
    for (let i = skip; i < count && frames.length < size; i++) frames.push(start + i * step);
    skip = 0;
    if (frames.length === size) break;
  }
  return frames;
}
