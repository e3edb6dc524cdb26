/**
 * The preview video of a finished job: its rendered frames, in frame order, as an H.264 MP4
 * at the scene's frame rate, for the job page. Assembled by a node that has ffmpeg.
 */
import { copyFile, mkdtemp, rename, rm, stat, symlink } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { ffmpegCommand } from '../config.ts';
import { runProcess } from '../process/run-process.ts';
import { frameRateOf, type FrameRate, type SceneFps } from './scene-fps.ts';

/** The encoder the preview needs; an ffmpeg built without it cannot make one. */
const H264_ENCODER = 'libx264';
/** The `key=value` lines of ffmpeg's -progress output. */
const PROGRESS_LINE = /^[a-z_0-9]+=/;
/** ffmpeg message lines kept for an error report. */
const ERROR_LINES = 10;
/** Checking ffmpeg must not hold up a node's start. */
const FFMPEG_PROBE_TIMEOUT_MS = 15_000;

/**
 * True when the node's ffmpeg runs and has the libx264 encoder: what a node must have to take a
 * preview-video task. Never throws.
 */
export async function hasFfmpeg(ffmpeg = ffmpegCommand()): Promise<boolean> {
  try {
    const result = await runProcess(ffmpeg, ['-hide_banner', '-loglevel', 'error', '-encoders'], {
      signal: AbortSignal.timeout(FFMPEG_PROBE_TIMEOUT_MS),
      tailLines: 1000,
    });
    return result.exitCode === 0 && result.tail.some((line) => line.trim().split(/\s+/)[1] === H264_ENCODER);
  } catch {
    // Not installed: runProcess rejects when the command cannot start.
    return false;
  }
}

export interface PreviewFrame {
  /** Blender's frame number; only the order matters, gaps are closed up. */
  frame: number;
  /** The rendered image (PNG, JPEG, ...; all frames of one extension). */
  path: string;
}

export interface PreviewVideoSpec {
  frames: readonly PreviewFrame[];
  /** The scene's rate: Blender's fps and fps_base, or frames per second. */
  fps: SceneFps | number;
  /** Where to write the .mp4; written under a temporary name and renamed when complete. */
  outPath: string;
  /** Scale frames wider than this down to it, keeping the aspect ratio. */
  maxWidth?: number;
  ffmpeg?: string;
  signal?: AbortSignal;
  /** Append ffmpeg's command line and output here. */
  logPath?: string;
}

export interface PreviewVideo {
  path: string;
  frameCount: number;
  frameRate: FrameRate;
  durationMs: number;
}

/**
 * Encodes `frames` into an H.264 MP4 (libx264, yuv420p, faststart so a browser can start
 * playing before the download ends) with exactly one video frame per rendered frame, in frame
 * order, at the scene's rate, even when frame numbers have gaps. Odd sizes are padded by a
 * pixel to the even size yuv420p needs rather than cropped. Throws with ffmpeg's last output
 * lines when it fails, and when it encodes another number of frames than it was given.
 *
 * Frames are taken as display-ready images (PNG, JPEG): OpenEXR frames hold linear scene
 * values, and ffmpeg would show them without Blender's view transform.
 */
export async function assemblePreviewVideo(spec: PreviewVideoSpec): Promise<PreviewVideo> {
  if (spec.frames.length === 0) throw new Error('making the preview video: no frames');
  if (spec.maxWidth !== undefined && !(Number.isInteger(spec.maxWidth) && spec.maxWidth >= 2)) {
    throw new Error(`maxWidth must be a whole number of at least 2, got ${spec.maxWidth}`);
  }
  const frameRate = frameRateOf(spec.fps);
  const frames = [...spec.frames].sort((a, b) => a.frame - b.frame);
  const ext = extname(frames[0]!.path).toLowerCase();
  const odd = frames.find((f) => extname(f.path).toLowerCase() !== ext);
  if (odd)
    throw new Error(
      `making the preview video: frame ${odd.frame} is ${extname(odd.path) || 'without extension'} but frame ${frames[0]!.frame} is ${ext}; all frames must be one format`,
    );
  const repeated = frames.find((f, i) => i > 0 && f.frame === frames[i - 1]!.frame);
  if (repeated) throw new Error(`making the preview video: frame ${repeated.frame} is given twice`);
  await Promise.all(frames.map((f) => checkFrameFile(f)));

  // ffmpeg's image sequence input wants consecutive numbers: link the frames in as 1..N, so
  // gaps in the job's frame numbers cannot turn into missing or repeated video frames.
  const seqDir = await mkdtemp(join(dirname(spec.outPath), '.preview-frames-'));
  const partPath = join(dirname(spec.outPath), `.${basename(spec.outPath)}.part`);
  try {
    await Promise.all(frames.map((f, i) => linkOrCopy(f.path, join(seqDir, `${String(i + 1).padStart(6, '0')}${ext}`))));
    const filters = [
      ...(spec.maxWidth ? [`scale='min(iw,${spec.maxWidth})':-2`] : []),
      // H.264 in 4:2:0 needs even width and height.
      'pad=ceil(iw/2)*2:ceil(ih/2)*2',
      'setsar=1',
      'format=yuv420p',
    ];
    const args = [
      // -xerror: by default ffmpeg skips a frame it cannot decode and still exits 0, which
      // would silently shorten the video. -progress: key=value lines, frame=N among them.
      '-hide_banner',
      '-nostdin',
      '-loglevel',
      'error',
      '-xerror',
      '-nostats',
      '-progress',
      'pipe:1',
      '-y',
      '-framerate',
      frameRate.text,
      '-start_number',
      '1',
      '-i',
      join(seqDir.replaceAll('%', '%%'), `%06d${ext}`),
      '-vf',
      filters.join(','),
      '-c:v',
      H264_ENCODER,
      '-preset',
      'veryfast',
      '-crf',
      '20',
      '-pix_fmt',
      'yuv420p',
      // Same rate out as in: no frame is dropped or duplicated.
      '-r',
      frameRate.text,
      '-movflags',
      '+faststart',
      '-an',
      '-f',
      'mp4',
      partPath,
    ];
    let encodedFrames = 0;
    // ffmpeg's own messages, without the progress lines, for an error report.
    const messages: string[] = [];
    const onLine = (line: string): void => {
      const match = /^frame=\s*(\d+)$/.exec(line);
      if (match) encodedFrames = Number(match[1]);
      else if (!PROGRESS_LINE.test(line) && messages.push(line) > ERROR_LINES) messages.shift();
    };
    const result = await runProcess(spec.ffmpeg ?? ffmpegCommand(), args, { signal: spec.signal, logPath: spec.logPath, onLine });
    if (result.exitCode !== 0) {
      const how = result.aborted ? 'ffmpeg was stopped' : `ffmpeg exited with ${result.exitCode ?? result.signal}`;
      throw new Error(`making the preview video: ${how}${messages.length ? `:\n${messages.join('\n')}` : ''}`);
    }
    if (encodedFrames !== frames.length) {
      throw new Error(`making the preview video: ffmpeg encoded ${encodedFrames} of ${frames.length} frames\n${messages.join('\n')}`);
    }
    await rename(partPath, spec.outPath);
    return { path: spec.outPath, frameCount: frames.length, frameRate, durationMs: result.durationMs };
  } finally {
    await rm(seqDir, { recursive: true, force: true });
    await rm(partPath, { force: true });
  }
}

async function checkFrameFile(frame: PreviewFrame): Promise<void> {
  // A link to a missing file would end ffmpeg's image sequence early without an error.
  const info = await stat(frame.path).catch((err: Error) => {
    throw new Error(`making the preview video: frame ${frame.frame}: ${err.message}`, { cause: err });
  });
  if (!info.isFile() || info.size === 0) throw new Error(`making the preview video: frame ${frame.frame} (${frame.path}) is not a non-empty file`);
}

async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await symlink(resolve(from), to);
  } catch {
    // File systems without symlinks (some network mounts): a copy does the same job.
    await copyFile(from, to);
  }
}
