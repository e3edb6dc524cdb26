/**
 * Reads Blender 3.x console output one line at a time. Every pattern here was taken from a
 * real Blender 3.4.1 log; test/worker-node/fixtures/ holds those logs.
 */

export type BlenderEvent =
  | {
      kind: 'progress';
      frame: number;
      /** Blender's own allocation, in MB (the first "Mem:"). */
      memMb?: number;
      /** The larger of Blender's peak and the render device's peak, in MB. */
      peakMb?: number;
      /** Render time of this frame so far, from "Time:". */
      elapsedSeconds?: number;
      /** "Sample 8/16" (Cycles) or "Rendering 1 / 4 samples" (EEVEE). */
      samplesDone?: number;
      samplesTotal?: number;
      /** What Blender is doing, e.g. "Scene, ViewLayer | Sample 8/16" or "Syncing Cube". */
      detail: string;
    }
  | { kind: 'saved'; path: string; frame?: number }
  /** Blender did not render a frame because its output file exists (use_overwrite off). */
  | { kind: 'skipped'; path: string; frame?: number }
  | { kind: 'time'; seconds: number; savingSeconds?: number }
  | { kind: 'error'; message: string }
  | { kind: 'warning'; message: string; path?: string };

// Fra:7 Mem:10.55M (Peak 10.93M) | Time:00:00.06 | Remaining:00:00.03 | Mem:0.99M, Peak:0.99M | Scene, ViewLayer | Sample 1/16
const PROGRESS = /^Fra:(\d+) Mem:([\d.]+)M \(Peak ([\d.]+)M\) \| (.*)$/;
const TIME_SEGMENT = /^Time:([\d:.]+)$/;
const REMAINING_SEGMENT = /^Remaining:[\d:.]+$/;
// Cycles' device memory: "Mem:0.99M, Peak:0.99M".
const DEVICE_MEM_SEGMENT = /^Mem:([\d.]+)M, Peak:([\d.]+)M$/;
const CYCLES_SAMPLES = /\bSample (\d+)\/(\d+)/;
const EEVEE_SAMPLES = /\bRendering (\d+) \/ (\d+) samples/;

const SAVED = /^\s*Saved: '(.*)'\s*$/;
const SKIPPED = /^\s*skipping existing frame "(.*)"\s*$/;
// " Time: 00:00.20 (Saving: 00:00.12)"; hours appear as "01:02:03.45".
const TIME = /^\s*Time: ([\d:.]+)(?: \(Saving: ([\d:.]+)\))?\s*$/;
// frame_000007.png, frame_0007.exr: the digits just before the extension.
const FRAME_IN_NAME = /(\d+)\.[A-Za-z0-9]+$/;

interface Rule {
  pattern: RegExp;
  event: (match: RegExpMatchArray, line: string) => BlenderEvent;
}

const error = (_m: RegExpMatchArray, line: string): BlenderEvent => ({ kind: 'error', message: stripPrefix(line) });
const warning = (m: RegExpMatchArray, line: string): BlenderEvent =>
  m[1] === undefined ? { kind: 'warning', message: stripPrefix(line) } : { kind: 'warning', message: stripPrefix(line), path: m[1] };

/**
 * Checked in order; the first match wins. Missing inputs come first and are warnings:
 * Blender 3.4 renders on without them (exit 0), so only the caller can decide they matter.
 */
const RULES: Rule[] = [
  // A linked library that is not there: "Warning: Unable to open '/x/lib.blend': No such file or directory".
  { pattern: /^Warning: Unable to open '([^']*)'/, event: warning },
  // From bpy.ops.file.report_missing_files(): "Warning: Path '/x/tex.png' not found".
  { pattern: /^Warning: Path '([^']*)' not found/, event: warning },
  // "Info: Cannot find lib '/x/lib.blend'" and "Info: LIB: Object: 'Cube' missing from '/x/lib.blend', parent '<direct>'".
  { pattern: /^Info: Cannot find lib '([^']*)'/, event: warning },
  { pattern: /^Info: LIB: .* missing from '([^']*)'/, event: warning },
  // Scripts inside the file were not run because of --disable-autoexec.
  { pattern: /^scripts disabled for "[^"]*", skipping '([^']*)'/, event: warning },
  { pattern: /^Warning: (.*)$/, event: (_m, line) => ({ kind: 'warning', message: stripPrefix(line) }) },
  // Fatal or at least render-breaking. Blender 3.4 prefixes most with "Error: ", e.g.
  // "Error: Failed to read blend file '/x.blend': Missing DNA block", "Error: Cannot render, no camera".
  // Not every one is fatal ("Error: Python: Traceback" goes on unless --python-exit-code), so the
  // exit code stays the authority.
  { pattern: /^Error: /, event: error },
  { pattern: /Missing DNA block|not a blend file|File format is not supported/, event: error },
  { pattern: /^No camera found in scene/, event: error },
  { pattern: /Cannot read file|Unable to open/, event: error },
  // "imb_savepng: Cannot open file for writing: '/x/frame_0001.png'".
  { pattern: /Cannot open file for writing/, event: error },
  // Out of memory: "Malloc returns null: len=2880000000 in Cycles Aligned Alloc, total 10089844",
  // then "terminate called after throwing an instance of 'std::bad_alloc'".
  { pattern: /^Malloc returns null|std::bad_alloc|[Oo]ut of memory|System is out of GPU memory/, event: error },
  // Blender's crash handler: "Writing: /tmp/anim.crash.txt" just before it re-raises the signal.
  { pattern: /^Writing: .*\.crash\.txt$/, event: (_m, line) => ({ kind: 'error', message: `Blender crashed, report ${line.slice('Writing: '.length)}` }) },
  // Printed by a shell wrapper around Blender, never by Blender itself.
  { pattern: /Segmentation fault|^Killed$|^Aborted/, event: error },
];

/**
 * Parses one line of Blender's merged stdout/stderr. Returns null for lines that carry
 * nothing a render node acts on.
 */
export function parseBlenderLine(line: string): BlenderEvent | null {
  const text = line.replace(/\s+$/, '');
  if (text === '') return null;

  const progress = PROGRESS.exec(text);
  if (progress) return parseProgress(progress);

  const saved = SAVED.exec(text);
  if (saved) return withFrame({ kind: 'saved' as const, path: saved[1]! });

  const skipped = SKIPPED.exec(text);
  if (skipped) return withFrame({ kind: 'skipped' as const, path: skipped[1]! });

  const time = TIME.exec(text);
  if (time) {
    const seconds = parseDuration(time[1]!);
    if (seconds !== undefined) {
      const savingSeconds = time[2] === undefined ? undefined : parseDuration(time[2]);
      return savingSeconds === undefined ? { kind: 'time', seconds } : { kind: 'time', seconds, savingSeconds };
    }
  }

  for (const rule of RULES) {
    const match = text.match(rule.pattern);
    if (match) return rule.event(match, text.trim());
  }
  return null;
}

/**
 * Parses Blender's durations, "MM:SS.hh" or "HH:MM:SS.hh", into seconds; undefined if the
 * text is not one.
 */
export function parseDuration(text: string): number | undefined {
  const match = /^(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$/.exec(text);
  if (!match) return undefined;
  const [, hours = '0', minutes, seconds] = match;
  // Rounded to hundredths: Blender prints hundredths and 0.1 + 0.2 style noise helps nobody.
  return Math.round((Number(hours) * 3600 + Number(minutes) * 60 + Number(seconds)) * 100) / 100;
}

function parseProgress(match: RegExpExecArray): BlenderEvent {
  const segments = match[4]!.split(' | ');
  let peakMb = Number(match[3]);
  let elapsedSeconds: number | undefined;
  const rest: string[] = [];
  for (const segment of segments) {
    const time = TIME_SEGMENT.exec(segment);
    const deviceMem = DEVICE_MEM_SEGMENT.exec(segment);
    if (time && elapsedSeconds === undefined) elapsedSeconds = parseDuration(time[1]!);
    else if (deviceMem) peakMb = Math.max(peakMb, Number(deviceMem[2]));
    else if (!REMAINING_SEGMENT.test(segment)) rest.push(segment);
  }
  const detail = rest.join(' | ');
  const event: BlenderEvent = { kind: 'progress', frame: Number(match[1]), memMb: Number(match[2]), peakMb, detail };
  if (elapsedSeconds !== undefined) event.elapsedSeconds = elapsedSeconds;
  const samples = CYCLES_SAMPLES.exec(detail) ?? EEVEE_SAMPLES.exec(detail);
  if (samples) {
    event.samplesDone = Number(samples[1]);
    event.samplesTotal = Number(samples[2]);
  }
  return event;
}

function withFrame<T extends { path: string; frame?: number }>(event: T): T {
  const name = event.path.slice(event.path.lastIndexOf('/') + 1);
  const digits = FRAME_IN_NAME.exec(name);
  if (digits) event.frame = Number(digits[1]);
  return event;
}

/** "Error: Cannot render, no camera" -> "Cannot render, no camera". */
function stripPrefix(line: string): string {
  return line.replace(/^(?:Error|Warning|Info): /, '');
}
