/** The frame list parser shared by the master, the CLI and the add-on's API calls (protocol/frame-list.ts). */
import { describe, expect, it } from 'vitest';
import {
  countFrames,
  formatFrameList,
  framesOfTask,
  isFrameOfTask,
  isListedFrame,
  isPlainRange,
  MAX_FRAME_RANGES,
  parseFrameList,
} from '../../protocol/frame-list.ts';

/** Every frame of a list, in order: those of a task from its first frame to its last. */
function expand(text: string): number[] {
  const ranges = parseFrameList(text);
  return framesOfTask(ranges, { start_frame: ranges[0]![0], end_frame: ranges.at(-1)![1], frame_step: 1 });
}

describe('parseFrameList', () => {
  it('reads a range, a stepped range, single frames and lists of them', () => {
    expect(expand('1-5')).toEqual([1, 2, 3, 4, 5]);
    expect(expand('1-100x25')).toEqual([1, 26, 51, 76]);
    expect(expand('1,5,10-12')).toEqual([1, 5, 10, 11, 12]);
    expect(expand(' 1-9x4 , 12 ')).toEqual([1, 5, 9, 12]);
    expect(expand('0')).toEqual([0]);
  });

  it('ends a stepped range on its last frame and sorts the ranges', () => {
    expect(parseFrameList('1-10x4')).toEqual([[1, 9, 4]]);
    expect(parseFrameList('20-30,1-3')).toEqual([
      [1, 3, 1],
      [20, 30, 1],
    ]);
  });

  it('refuses a range that counts down, naming the way to write it', () => {
    expect(() => parseFrameList('100-1')).toThrow('"100-1" counts down: write the lower frame first (1-100)');
  });

  it('refuses overlaps instead of merging them', () => {
    expect(() => parseFrameList('1-10,5-20')).toThrow('1-10 and 5-20 overlap: list each frame once');
    expect(() => parseFrameList('1-9x2,2-8x2')).toThrow('1-9x2 and 2-8x2 overlap');
    expect(() => parseFrameList('3,3')).toThrow('3 and 3 overlap');
    expect(parseFrameList('1-10,11-20')).toHaveLength(2);
  });

  it('refuses malformed items, step 0 and frames Blender cannot render', () => {
    expect(() => parseFrameList('')).toThrow('has an empty item');
    expect(() => parseFrameList('1,,2')).toThrow('has an empty item');
    expect(() => parseFrameList('1-')).toThrow('"1-" is not a frame, a range (10-20) or a stepped range (1-100x5)');
    expect(() => parseFrameList('-5')).toThrow('"-5" is not a frame');
    expect(() => parseFrameList('1.5')).toThrow('"1.5" is not a frame');
    expect(() => parseFrameList('1-10x0')).toThrow('"1-10x0" has step 0');
    expect(() => parseFrameList('1-1048575')).toThrow('frame 1048575 in "1-1048575" is outside 0-1048574');
  });

  it('refuses huge lists: more than MAX_FRAME_RANGES ranges', () => {
    const many = (n: number) => Array.from({ length: n }, (_, i) => i * 2).join(',');
    expect(parseFrameList(many(MAX_FRAME_RANGES))).toHaveLength(MAX_FRAME_RANGES);
    expect(() => parseFrameList(many(MAX_FRAME_RANGES + 1))).toThrow(`1001 ranges, over the limit of ${MAX_FRAME_RANGES}`);
    expect(() => parseFrameList('1,'.repeat(20_000))).toThrow('longer than');
  });

  it('counts a million frames without listing them', () => {
    const ranges = parseFrameList('0-999999,1000001-1048574x7');
    expect(countFrames(ranges)).toBe(1_000_000 + Math.floor((1_048_574 - 1_000_001) / 7) + 1);
  });
});

describe('helpers', () => {
  const ranges = parseFrameList('1-9x4,12');
  it('isListedFrame tells a listed frame', () => {
    expect([1, 2, 5, 9, 10, 12].map((f) => isListedFrame(ranges, f))).toEqual([true, false, true, true, false, true]);
  });

  it("a task's frames are every frame_step-th listed frame from its first to its last, across ranges", () => {
    const list = parseFrameList('1-10,20-30x2,40');
    // Listed: 1..10 (positions 0-9), 20, 22, ..., 30 (10-15), 40 (16).
    expect(framesOfTask(list, { start_frame: 5, end_frame: 22, frame_step: 1 })).toEqual([5, 6, 7, 8, 9, 10, 20, 22]);
    expect(framesOfTask(list, { start_frame: 1, end_frame: 40, frame_step: 4 })).toEqual([1, 5, 9, 24, 40]);
    expect(framesOfTask(list, { start_frame: 2, end_frame: 30, frame_step: 7 })).toEqual([2, 9, 30]);
    expect(framesOfTask(list, { start_frame: 1, end_frame: 40, frame_step: 16 })).toEqual([1, 40]);
    const task = { start_frame: 1, end_frame: 40, frame_step: 4 };
    const all = expand('1-10,20-30x2,40');
    expect(all.filter((f) => isFrameOfTask(list, task, f))).toEqual(framesOfTask(list, task));
    expect([0, 3, 21, 41].some((f) => isFrameOfTask(list, task, f))).toBe(false);
  });

  it('formatFrameList writes a list back, and a one-range, every-frame list is a plain range', () => {
    expect(formatFrameList(parseFrameList('12,1-10x4'))).toBe('1-9x4,12');
    expect(isPlainRange(parseFrameList('1-250'))).toBe(true);
    expect(isPlainRange(parseFrameList('7'))).toBe(true);
    expect(isPlainRange(parseFrameList('1-250x2'))).toBe(false);
    expect(isPlainRange(parseFrameList('1,2'))).toBe(false);
  });
});
