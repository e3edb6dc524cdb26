/** Blender's command line for a task (checked against real Blender in blender-render.test.ts). */
import { describe, expect, it } from 'vitest';
import { buildRenderArgs, frameListArg, OVERWRITE_OUTPUT_EXPR } from '../../worker-node/blender/render-args.ts';

const base = { blendPath: '/w/blends/abc.blend', outputPattern: '/w/renders/t1/frame_######' };

describe('buildRenderArgs', () => {
  it('renders a contiguous range as one stepped animation render, with the safety flags before the file', () => {
    expect(buildRenderArgs({ ...base, frames: [5, 6, 7, 8] })).toEqual([
      '-b',
      '--factory-startup',
      '--disable-autoexec',
      '-noaudio',
      '/w/blends/abc.blend',
      '--python-exit-code',
      '1',
      '--python-expr',
      OVERWRITE_OUTPUT_EXPR,
      '-o',
      '/w/renders/t1/frame_######',
      '-x',
      '1',
      '-s',
      '5',
      '-e',
      '8',
      '-j',
      '1',
      '-a',
    ]);
  });

  it('renders a single frame as a range of one', () => {
    expect(buildRenderArgs({ ...base, frames: [7] }).slice(-7)).toEqual(['-s', '7', '-e', '7', '-j', '1', '-a']);
  });

  it('renders sparse frames with -f and a compact list, and never with -a', () => {
    const args = buildRenderArgs({ ...base, frames: [1, 3, 5, 6, 7, 8, 9, 20, 21] });
    expect(args.slice(-2)).toEqual(['-f', '1,3,5..9,20,21']);
    expect(args).not.toContain('-a');
    expect(args).not.toContain('-s');
  });

  it('puts format, threads and caller snippets where Blender applies them: after the file, before the render action', () => {
    const args = buildRenderArgs({ ...base, frames: [2, 4], threads: 0, format: 'OPEN_EXR', pythonExprs: ['print(1)', 'print(2)'] });
    expect(args).toEqual([
      '-b',
      '--factory-startup',
      '--disable-autoexec',
      '-noaudio',
      '/w/blends/abc.blend',
      '--python-exit-code',
      '1',
      '--python-expr',
      OVERWRITE_OUTPUT_EXPR,
      '--python-expr',
      'print(1)',
      '--python-expr',
      'print(2)',
      '-o',
      '/w/renders/t1/frame_######',
      '-F',
      'OPEN_EXR',
      '-x',
      '1',
      '-t',
      '0',
      '-f',
      '2,4',
    ]);
  });

  it('refuses input Blender would misread', () => {
    expect(() => buildRenderArgs({ ...base, frames: [] })).toThrow(/no frames/);
    // "-3" means "3 before the end frame" to Blender.
    expect(() => buildRenderArgs({ ...base, frames: [-3, -2] })).toThrow(/frame -3 cannot be rendered/);
    expect(() => buildRenderArgs({ ...base, frames: [3, 2] })).toThrow(/ascending/);
    expect(() => buildRenderArgs({ ...base, frames: [2, 2] })).toThrow(/unique/);
    expect(() => buildRenderArgs({ ...base, frames: [1.5] })).toThrow(/whole frames/);
    expect(() => buildRenderArgs({ ...base, blendPath: 'rel.blend', frames: [1] })).toThrow(/blendPath must be absolute/);
    expect(() => buildRenderArgs({ ...base, outputPattern: '//render/', frames: [1] })).toThrow(/outputPattern must be absolute/);
    expect(() => buildRenderArgs({ ...base, frames: [1], threads: -1 })).toThrow(/threads/);
  });
});

describe('frameListArg', () => {
  it.each([
    [[7], '7'],
    [[1, 2], '1,2'],
    [[1, 2, 3], '1..3'],
    [[0, 2, 4], '0,2,4'],
    [[1, 3, 5, 6, 7, 8, 9], '1,3,5..9'],
    [[10, 11, 12, 14, 15, 100], '10..12,14,15,100'],
  ])('%j -> %s', (frames, expected) => {
    expect(frameListArg(frames)).toBe(expected);
  });
});
