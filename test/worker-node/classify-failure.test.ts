/**
 * Why a Blender run failed, from its exit status and output tail. The tails are real
 * Blender 3.4.1 logs; the exit statuses are the ones those runs ended with.
 */
import { describe, expect, it } from 'vitest';
import { classifyBlenderFailure } from '../../worker-node/blender/classify-failure.ts';
import { fixtureLines } from './blender-fixtures.ts';

const run = (fixture: string, exitCode: number | null, signal: NodeJS.Signals | null = null) =>
  classifyBlenderFailure({ exitCode, signal, tail: fixtureLines(fixture) });

describe('classifyBlenderFailure', () => {
  it("a truncated .blend is a corrupt file, quoting Blender's error and exit code", () => {
    expect(run('truncated-blend.txt', 1)).toEqual({
      reason: 'corrupt_file',
      message: `corrupt .blend: Blender says "Failed to read blend file '/tmp/w/trunc2k.blend': Missing DNA block" (exit 1); upload the file again`,
    });
  });

  it('a file that is not a .blend at all is a corrupt file', () => {
    expect(run('format-not-supported.txt', 1)).toMatchObject({ reason: 'corrupt_file', message: expect.stringContaining('File format is not supported') });
  });

  it('a header Blender 3.4 cannot parse ("not a blend file", as with the Blender 5 header) points at a newer Blender', () => {
    const failure = run('not-a-blend-file.txt', 1);
    expect(failure.reason).toBe('newer_blender');
    expect(failure.message).toMatch(/newer Blender than this node's: Blender says ".*not a blend file" \(exit 1\)/);
  });

  it('a scene without a camera', () => {
    expect(run('no-camera.txt', 1)).toEqual({
      reason: 'no_camera',
      message: 'the scene has no active camera: Blender says "Cannot render, no camera" (exit 1)',
    });
  });

  it('running out of memory ends in SIGABRT from std::bad_alloc, and is out_of_memory, not a crash', () => {
    const failure = run('out-of-memory-abort.txt', null, 'SIGABRT');
    expect(failure.reason).toBe('out_of_memory');
    expect(failure.message).toMatch(/^out of memory: Blender says "Malloc returns null: len=2880000000 .*" \(signal SIGABRT\)$/);
  });

  it('a segfault is a crash that names the crash report and suggests a newer-Blender file', () => {
    const failure = run('crash-sigsegv.txt', null, 'SIGSEGV');
    expect(failure.reason).toBe('crashed');
    expect(failure.message).toMatch(/SIGSEGV/);
    expect(failure.message).toMatch(/\/tmp\/anim\.crash\.txt/);
    expect(failure.message).toMatch(/newer Blender/);
    // The same crash seen through a shell wrapper: exit 139 and no signal.
    expect(run('crash-sigsegv.txt', 139).reason).toBe('crashed');
  });

  it('a render stopped by a signal mid-frame is killed; an unexplained SIGKILL hints at the OOM killer', () => {
    const midRender = fixtureLines('cycles-anim-frames-1-2.txt').slice(0, 30);
    expect(classifyBlenderFailure({ exitCode: null, signal: 'SIGTERM', tail: midRender })).toEqual({
      reason: 'killed',
      message: 'Blender was stopped by SIGTERM (signal SIGTERM)',
    });
    const sigkill = classifyBlenderFailure({ exitCode: null, signal: 'SIGKILL', tail: midRender });
    expect(sigkill.reason).toBe('killed');
    expect(sigkill.message).toMatch(/out of memory/);
    // A wrapper shell that printed "Killed" and exited 137.
    expect(classifyBlenderFailure({ exitCode: 137, signal: null, tail: [...midRender, 'Killed'] }).reason).toBe('out_of_memory');
  });

  it('an output folder Blender cannot write to is missing output, with its message', () => {
    const failure = run('cannot-save-output.txt', 1);
    expect(failure.reason).toBe('missing_output');
    expect(failure.message).toContain("Cannot open file for writing: '/proc/nope/frame_0001.png'");
  });

  it('exit 0 with frames skipped because their files existed is missing output, and says why', () => {
    const failure = run('skipped-existing-frames.txt', 0);
    expect(failure.reason).toBe('missing_output');
    expect(failure.message).toMatch(/already existed.*Overwrite off/);
  });

  it('exit 0 after saving some frames (the caller found others missing) is missing output', () => {
    expect(run('cycles-anim-frames-1-2.txt', 0)).toEqual({
      reason: 'missing_output',
      message: 'Blender exited 0 but some expected frames were not saved (exit 0)',
    });
  });

  it('a missing .blend and a failing --python-expr are unknown, with the line that explains them', () => {
    expect(run('blend-not-found.txt', 1)).toEqual({
      reason: 'unknown',
      message: `Blender failed: "Cannot read file '/tmp/w/nonexistent.blend': No such file or directory" (exit 1)`,
    });
    expect(run('python-expr-failed.txt', 1)).toEqual({
      reason: 'unknown',
      message: 'a --python-expr failed: RuntimeError: boom (exit 1)',
    });
  });

  it('with no output at all, says so', () => {
    expect(classifyBlenderFailure({ exitCode: 2, signal: null, tail: [] })).toEqual({
      reason: 'unknown',
      message: 'Blender failed without an error message (exit 2)',
    });
  });
});
