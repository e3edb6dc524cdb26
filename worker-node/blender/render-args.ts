/**
 * The Blender command line for rendering frames of an uploaded .blend: the safe arguments and
 * the file (launch.ts), options that change the loaded scene (-o, -F, -x, -t, --python-expr)
 * after it, and the render action (-f or -a) last, because it runs the moment it is parsed.
 */
import { isAbsolute } from 'node:path';
import { blenderArgs } from './launch.ts';

export interface RenderSpec {
  /** Absolute path to the .blend on disk. */
  blendPath: string;
  /** Absolute path prefix with # for the frame number, e.g. /w/renders/<task>/frame_######. */
  outputPattern: string;
  /** Frames to render, ascending, may be non-contiguous. */
  frames: number[];
  /** -t N (0 = all cores); omitted when undefined. */
  threads?: number;
  /** Overrides the file's output format (-F). */
  format?: 'PNG' | 'JPEG' | 'OPEN_EXR' | 'TIFF';
  /** Extra --python-expr snippets, run after the file loads, before rendering. */
  pythonExprs?: string[];
}

/**
 * Run before any caller snippet. With `use_overwrite` off, Blender skips a frame whose file
 * exists ("skipping existing frame"), so a retry would keep a file half-written by a killed
 * attempt; with `use_placeholder` on it writes an empty file before rendering. Both are
 * per-file settings a farm must not inherit.
 */
export const OVERWRITE_OUTPUT_EXPR = 'import bpy; r = bpy.context.scene.render; r.use_overwrite = True; r.use_placeholder = False';

/** Blender's -f and -s read "-N" and "+N" as relative to the scene range, so only 0 and up are absolute. */
const MAX_FRAME = 1_048_574;

/**
 * Builds Blender's argument list (without the executable) to render `spec.frames` of
 * `spec.blendPath` into `spec.outputPattern`. A contiguous range renders with
 * `-s A -e B -j 1 -a`, stepping frame by frame like an interactive animation render;
 * anything else with `-f` and a frame list. Throws on frames Blender cannot express.
 */
export function buildRenderArgs(spec: RenderSpec): string[] {
  if (!isAbsolute(spec.blendPath)) throw new Error(`blendPath must be absolute, got ${spec.blendPath}`);
  // Blender reads a leading "//" in -o as relative to the .blend's folder.
  if (!isAbsolute(spec.outputPattern) || spec.outputPattern.startsWith('//')) {
    throw new Error(`outputPattern must be absolute, got ${spec.outputPattern}`);
  }
  if (spec.threads !== undefined && !(Number.isInteger(spec.threads) && spec.threads >= 0 && spec.threads <= 1024)) {
    throw new Error(`threads must be an integer from 0 to 1024, got ${spec.threads}`);
  }
  const frames = checkFrames(spec.frames);

  const args = blenderArgs(spec.blendPath);
  // A failing snippet must stop the render, not let it go on with half-applied settings.
  args.push('--python-exit-code', '1');
  for (const expr of [OVERWRITE_OUTPUT_EXPR, ...(spec.pythonExprs ?? [])]) args.push('--python-expr', expr);
  args.push('-o', spec.outputPattern);
  if (spec.format) args.push('-F', spec.format);
  // Always add the extension, whatever the file says, so the node knows the file names.
  args.push('-x', '1');
  if (spec.threads !== undefined) args.push('-t', String(spec.threads));

  const first = frames[0]!;
  const last = frames[frames.length - 1]!;
  if (last - first + 1 === frames.length) {
    // -j 1: -a otherwise honours the file's frame_step and would skip frames.
    args.push('-s', String(first), '-e', String(last), '-j', '1', '-a');
  } else {
    args.push('-f', frameListArg(frames));
  }
  return args;
}

/**
 * Formats frames as Blender's -f list: comma-separated, runs of consecutive frames as
 * `a..b`, e.g. [1, 3, 5, 6, 7, 8, 9] -> "1,3,5..9". Frames must be ascending and unique.
 */
export function frameListArg(frames: readonly number[]): string {
  const sorted = checkFrames(frames);
  const parts: string[] = [];
  let runStart = sorted[0]!;
  let prev = runStart;
  for (const frame of [...sorted.slice(1), Number.NaN]) {
    if (frame === prev + 1) {
      prev = frame;
      continue;
    }
    // A run of two is written "a,b": as short as "a..b" and clearer in a log.
    if (prev === runStart) parts.push(String(runStart));
    else if (prev === runStart + 1) parts.push(`${runStart},${prev}`);
    else parts.push(`${runStart}..${prev}`);
    runStart = prev = frame;
  }
  return parts.join(',');
}

function checkFrames(frames: readonly number[]): readonly number[] {
  if (frames.length === 0) throw new Error('no frames to render');
  frames.forEach((frame, i) => {
    if (!Number.isInteger(frame) || frame < 0 || frame > MAX_FRAME) {
      throw new Error(`frame ${frame} cannot be rendered: Blender takes whole frames from 0 to ${MAX_FRAME} on its command line`);
    }
    if (i > 0 && frame <= frames[i - 1]!) throw new Error(`frames must be ascending and unique, got ${frames[i - 1]} then ${frame}`);
  });
  return frames;
}
