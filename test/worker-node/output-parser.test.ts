/** Parsing Blender's console output, on real Blender 3.4.1 logs (test/worker-node/fixtures/). */
import { describe, expect, it } from 'vitest';
import { parseBlenderLine, parseDuration, type BlenderEvent } from '../../worker-node/blender/output-parser.ts';
import { fixtureLines } from './blender-fixtures.ts';

function events(name: string): BlenderEvent[] {
  return fixtureLines(name).flatMap((line) => parseBlenderLine(line) ?? []);
}

const ofKind = <K extends BlenderEvent['kind']>(all: BlenderEvent[], kind: K) => all.filter((e): e is Extract<BlenderEvent, { kind: K }> => e.kind === kind);

describe('parseBlenderLine on real Blender 3.4 logs', () => {
  it('a Cycles animation render of frames 1-2: progress for each frame, two saved frames, two render times, no errors', () => {
    const all = events('cycles-anim-frames-1-2.txt');
    const progress = ofKind(all, 'progress');
    expect(progress.length).toBeGreaterThan(80);
    expect(new Set(progress.map((p) => p.frame))).toEqual(new Set([1, 2]));
    expect(Math.max(...progress.map((p) => p.peakMb ?? 0))).toBe(11.06);

    expect(ofKind(all, 'saved')).toEqual([
      { kind: 'saved', path: '/tmp/w/renders/frame_000001.png', frame: 1 },
      { kind: 'saved', path: '/tmp/w/renders/frame_000002.png', frame: 2 },
    ]);
    expect(ofKind(all, 'time')).toEqual([
      { kind: 'time', seconds: 0.21, savingSeconds: 0.14 },
      { kind: 'time', seconds: 0.04, savingSeconds: 0 },
    ]);
    expect(all.filter((e) => e.kind === 'error' || e.kind === 'warning')).toEqual([]);
  });

  it('a Cycles sample line: frame, memory, elapsed time and samples; the "Remaining" segment is dropped from the detail', () => {
    expect(
      parseBlenderLine('Fra:2 Mem:10.50M (Peak 11.06M) | Time:00:00.01 | Remaining:00:00.05 | Mem:0.89M, Peak:0.89M | Scene, ViewLayer | Sample 1/16'),
    ).toEqual({
      kind: 'progress',
      frame: 2,
      memMb: 10.5,
      peakMb: 11.06,
      elapsedSeconds: 0.01,
      samplesDone: 1,
      samplesTotal: 16,
      detail: 'Scene, ViewLayer | Sample 1/16',
    });
  });

  it("peak memory is the larger of Blender's peak and the render device's peak", () => {
    const line = 'Fra:7 Mem:23.51M (Peak 31.02M) | Time:00:00.45 | Mem:40.74M, Peak:61.80M | Scene, ViewLayer | Sample 8/16';
    expect(parseBlenderLine(line)).toMatchObject({ kind: 'progress', frame: 7, memMb: 23.51, peakMb: 61.8, samplesDone: 8, samplesTotal: 16 });
    // The out-of-memory log: Blender's own peak (90.39M) beats the device's (80.78M).
    const oom = ofKind(events('out-of-memory-abort.txt'), 'progress');
    expect(oom.at(-1)).toMatchObject({ frame: 1, memMb: 9.62, peakMb: 90.39, elapsedSeconds: 83.44, detail: 'Scene | Reading full buffer from disk' });
  });

  it('an EEVEE render: progress with samples, and the EGL fallback chatter is not an error', () => {
    const all = events('eevee-frame-1.txt');
    expect(ofKind(all, 'progress').at(-1)).toEqual({
      kind: 'progress',
      frame: 1,
      memMb: 10.76,
      peakMb: 11.87,
      elapsedSeconds: 2.79,
      samplesDone: 4,
      samplesTotal: 4,
      detail: 'Rendering 4 / 4 samples',
    });
    expect(ofKind(all, 'saved')).toEqual([{ kind: 'saved', path: '/tmp/w/renders/eevee_0001.png', frame: 1 }]);
    expect(ofKind(all, 'error')).toEqual([]);
  });

  it.each([
    ['truncated-blend.txt', "Failed to read blend file '/tmp/w/trunc2k.blend': Missing DNA block"],
    ['not-a-blend-file.txt', "Failed to read blend file '/tmp/w/newhdr.blend', not a blend file"],
    ['format-not-supported.txt', "File format is not supported in file '/tmp/w/text.blend'"],
    ['blend-not-found.txt', "Cannot read file '/tmp/w/nonexistent.blend': No such file or directory"],
    ['no-camera.txt', 'Cannot render, no camera'],
  ])("%s: exactly one error, Blender's own words", (fixture, message) => {
    const all = events(fixture);
    expect(all).toEqual([{ kind: 'error', message }]);
  });

  it("a file that cannot be saved: both of Blender's complaints are errors", () => {
    expect(ofKind(events('cannot-save-output.txt'), 'error').map((e) => e.message)).toEqual([
      "imb_savepng: Cannot open file for writing: '/proc/nope/frame_0001.png'",
      "Render error (Invalid argument) cannot save: '/proc/nope/frame_0001.png'",
    ]);
  });

  it('a missing image texture is silent in 3.4 except through report_missing_files(), which names the path', () => {
    const all = events('missing-texture.txt');
    expect(ofKind(all, 'warning')).toEqual([{ kind: 'warning', message: "Path '/tmp/w/fx/textures/gone.png' not found", path: '/tmp/w/fx/textures/gone.png' }]);
    expect(ofKind(all, 'error')).toEqual([]);
    expect(ofKind(all, 'saved')).toHaveLength(1);
  });

  it('a missing linked library gives warnings naming the library, and the render goes on', () => {
    const all = events('missing-library.txt');
    expect(ofKind(all, 'warning')).toEqual([
      { kind: 'warning', message: "Unable to open '/tmp/w/fx/lib.blend': No such file or directory", path: '/tmp/w/fx/lib.blend' },
      { kind: 'warning', message: "Cannot find lib '/tmp/w/fx/lib.blend'", path: '/tmp/w/fx/lib.blend' },
      { kind: 'warning', message: "LIB: Object: 'LibCube' missing from '/tmp/w/fx/lib.blend', parent '<direct>'", path: '/tmp/w/fx/lib.blend' },
      {
        kind: 'warning',
        message:
          '1 libraries and 1 linked data-blocks are missing (including 0 ObjectData and 0 Proxies), please check the Info and Outliner editors for details',
      },
    ]);
    expect(ofKind(all, 'error')).toEqual([]);
    expect(ofKind(all, 'saved')).toHaveLength(1);
  });

  it('out of memory and a crash are errors', () => {
    expect(ofKind(events('out-of-memory-abort.txt'), 'error').map((e) => e.message)).toEqual([
      'Malloc returns null: len=2880000000 in Cycles Aligned Alloc, total 10089844',
      "terminate called after throwing an instance of 'std::bad_alloc'",
      'what():  std::bad_alloc',
    ]);
    expect(events('crash-sigsegv.txt')).toEqual([{ kind: 'error', message: 'Blender crashed, report /tmp/anim.crash.txt' }]);
  });

  it('frames skipped because their files exist are reported with their frame numbers', () => {
    expect(ofKind(events('skipped-existing-frames.txt'), 'skipped')).toEqual([
      { kind: 'skipped', path: '/tmp/w/renders/frame_000001.png', frame: 1 },
      { kind: 'skipped', path: '/tmp/w/renders/frame_000002.png', frame: 2 },
    ]);
  });

  it('a failing --python-expr is an error line', () => {
    expect(ofKind(events('python-expr-failed.txt'), 'error').map((e) => e.message)).toEqual([
      'Python: Traceback (most recent call last):',
      "script failed, expr: 'raise RuntimeError('boom')', exiting.",
    ]);
  });
});

describe('parseBlenderLine on other forms', () => {
  it('reads render times with and without hours and without the saving part', () => {
    expect(parseBlenderLine(' Time: 01:02:03.45 (Saving: 00:00.10)')).toEqual({ kind: 'time', seconds: 3723.45, savingSeconds: 0.1 });
    expect(parseBlenderLine('Time: 00:12.50')).toEqual({ kind: 'time', seconds: 12.5 });
  });

  it('takes the frame from the digits before the extension, or none', () => {
    expect(parseBlenderLine(" Saved: '/w/renders/t-1/frame_000123.exr'")).toEqual({ kind: 'saved', path: '/w/renders/t-1/frame_000123.exr', frame: 123 });
    expect(parseBlenderLine("Saved: '/w/renders/2024/still.png'")).toEqual({ kind: 'saved', path: '/w/renders/2024/still.png' });
    expect(parseBlenderLine("Saved: '/w/it's here/f_0009.png'")).toEqual({ kind: 'saved', path: "/w/it's here/f_0009.png", frame: 9 });
  });

  it('ignores lines that carry nothing to act on', () => {
    for (const line of [
      '',
      'Blender 3.4.1',
      'Read blend: /w/a.blend',
      'Blender quit',
      "Info: Read library:  '/x/lib.blend', '//lib.blend', parent '<direct>'",
      'Managed to successfully fallback to surfaceless EGL rendering!',
    ]) {
      expect(parseBlenderLine(line), line).toBeNull();
    }
  });

  it('recognises shell and older-Blender fatal lines', () => {
    expect(parseBlenderLine('Segmentation fault (core dumped)')).toMatchObject({ kind: 'error' });
    expect(parseBlenderLine('Killed')).toEqual({ kind: 'error', message: 'Killed' });
    expect(parseBlenderLine('No camera found in scene "Scene"')).toMatchObject({ kind: 'error' });
    expect(parseBlenderLine('Unable to open a display')).toMatchObject({ kind: 'error' });
  });
});

describe('parseDuration', () => {
  it.each([
    ['00:00.21', 0.21],
    ['01:23.44', 83.44],
    ['01:02:03.45', 3723.45],
    ['nonsense', undefined],
  ])('%s -> %s', (text, seconds) => {
    expect(parseDuration(text)).toBe(seconds);
  });
});
