/**
 * Previews: after a frame is uploaded, the node makes a small JPEG of it (PREVIEW_WIDTH_PX wide)
 * and uploads it beside the frame, so the dashboard shows thumbnails whatever the output format
 * (browsers do not display EXR, and a grid of 4K PNGs is too heavy).
 *
 * How, in order of preference:
 *  - the hot Blender that rendered the frame writes the preview itself right after the frame
 *    (hot_render.py; milliseconds, no extra process) and the task runner passes its path here;
 *  - ffmpeg when it is on PATH (frames of `--no-hot` renders, or when the driver's preview
 *    failed): fast (about 0.1 s a frame), reads EXR, TIFF, PNG, JPEG, DPX...;
 *    linear EXR is converted to sRGB so it looks as Blender shows it;
 *  - otherwise Blender itself (always there on a node) for formats a browser cannot show: it
 *    loads the frame, scales it and saves a JPEG through the scene's colour management. Blender
 *    starts for each preview (seconds), so PNG, JPEG, WebP and BMP frames, which the dashboard
 *    can show as they are, get no preview without ffmpeg.
 * PNG frames at most SMALL_FRAME_MAX_WIDTH_PX wide get no preview: the dashboard shows the frame
 * itself, which is then no heavier than a thumbnail, and on a node whose cores Blender fills the
 * preview and its upload would only take time from the render. `FARM_PREVIEWS=on` makes previews
 * of those too, `FARM_PREVIEWS=off` of nothing. A preview that fails is logged and skipped: it
 * never fails the frame or the task.
 */
import { execFile } from 'node:child_process';
import { mkdir, open, rm } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { promisify } from 'node:util';
import { PREVIEW_WIDTH_PX } from '../protocol/api.ts';
import { blenderArgs } from './blender/launch.ts';
import { ffmpegCommand, findExecutable, previewMode } from './config.ts';
import type { Logger } from './logger.ts';
import type { MasterClient } from './master-client.ts';

const run = promisify(execFile);

/** Frame formats a browser shows as they are: without ffmpeg they get no preview. */
const BROWSER_FORMATS = new Set(['.png', '.jpg', '.jpeg', '.webp', '.bmp']);

/** JPEG quality (1-100) of the previews Blender writes; ffmpeg's `-q:v 4` is about the same size. */
const PREVIEW_JPEG_QUALITY = 80;

/** PNG frames no wider than this get no preview (unless FARM_PREVIEWS=on): twice the preview's width, for HiDPI screens. */
export const SMALL_FRAME_MAX_WIDTH_PX = 2 * PREVIEW_WIDTH_PX;

/** What the hot Blender's driver is asked for (hot_render.py's "preview"; snake_case is its JSON). */
export interface DriverPreviewSettings {
  /** Pixels; frames narrower than this are kept at their size. */
  width: number;
  quality: number;
  /** PNG frames at most this wide get no preview; 0 = previews of every frame. */
  skip_png_up_to: number;
}

/** The previews a hot Blender should write with this environment: null with FARM_PREVIEWS=off. */
export function driverPreviewSettings(env: NodeJS.ProcessEnv = process.env): DriverPreviewSettings | null {
  const mode = previewMode(env);
  if (mode === 'off') return null;
  return { width: PREVIEW_WIDTH_PX, quality: PREVIEW_JPEG_QUALITY, skip_png_up_to: mode === 'on' ? 0 : SMALL_FRAME_MAX_WIDTH_PX };
}

/** The width of a PNG file from its header (the IHDR chunk comes first); null for anything else. */
export async function pngWidth(path: string): Promise<number | null> {
  const file = await open(path, 'r');
  try {
    const { buffer, bytesRead } = await file.read(Buffer.alloc(24), 0, 24, 0);
    const signature = buffer.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    return bytesRead === 24 && signature && buffer.toString('latin1', 12, 16) === 'IHDR' ? buffer.readUInt32BE(16) : null;
  } finally {
    await file.close();
  }
}

/** Blender's part: `blender -b --python-expr SCRIPT -- SRC DST WIDTH`. */
const BLENDER_PREVIEW_SCRIPT = `
import sys
import bpy
src, dst, width = sys.argv[sys.argv.index("--") + 1:][:3]
width = int(width)
img = bpy.data.images.load(src)
w, h = img.size
if w > width:
    img.scale(width, max(1, round(h * width / w)))
settings = bpy.context.scene.render.image_settings
settings.file_format = "JPEG"
settings.color_mode = "RGB"
settings.quality = ${PREVIEW_JPEG_QUALITY}
img.save_render(dst, scene=bpy.context.scene)
`;

export type PreviewTool = 'ffmpeg' | 'blender' | 'off';

/** Which tool makes previews on this machine. */
export function choosePreviewTool(env: NodeJS.ProcessEnv = process.env): { tool: PreviewTool; ffmpeg: string | null } {
  if (previewMode(env) === 'off') return { tool: 'off', ffmpeg: null };
  const ffmpeg = findExecutable(ffmpegCommand(env), env.PATH);
  return ffmpeg ? { tool: 'ffmpeg', ffmpeg } : { tool: 'blender', ffmpeg: null };
}

/**
 * Writes a JPEG preview of `framePath` to `outPath` with the given tool. Answers false when the
 * tool does not make previews of this format (Blender for browser formats, or 'off').
 */
export async function makePreview(
  framePath: string,
  outPath: string,
  tool: PreviewTool,
  programs: { ffmpeg: string | null; blender: string },
): Promise<boolean> {
  const ext = extname(framePath).toLowerCase();
  if (tool === 'ffmpeg' && programs.ffmpeg) {
    // -apply_trc: EXR holds linear light; show it with the sRGB curve, as Blender's view does.
    const input = ext === '.exr' ? ['-apply_trc', 'iec61966_2_1', '-i', framePath] : ['-i', framePath];
    await run(
      programs.ffmpeg,
      [
        '-hide_banner',
        '-loglevel',
        'error',
        '-nostdin',
        '-y',
        ...input,
        '-vf',
        `scale='min(${PREVIEW_WIDTH_PX},iw)':-2`,
        '-frames:v',
        '1',
        '-pix_fmt',
        'yuvj420p',
        '-q:v',
        '4',
        outPath,
      ],
      { timeout: 60_000 },
    );
    return true;
  }
  if (tool === 'blender' && !BROWSER_FORMATS.has(ext)) {
    await run(
      programs.blender,
      blenderArgs(null, ['--python-exit-code', '1', '--python-expr', BLENDER_PREVIEW_SCRIPT, '--', framePath, outPath, String(PREVIEW_WIDTH_PX)]),
      {
        timeout: 120_000,
      },
    );
    return true;
  }
  return false;
}

export interface PreviewTarget {
  workerId: string;
  taskId: string;
  leaseId: string;
  frame: number;
  /** The frame on disk, already uploaded. */
  path: string;
  /** A preview the hot Blender already wrote (hot-blender.ts): uploaded as it is, then deleted. */
  previewPath?: string;
}

/** Makes and uploads previews for one node; one instance per node process. */
export class FramePreviews {
  private readonly client: MasterClient;
  private readonly log: Logger;
  private readonly blender: string;
  private readonly tool: PreviewTool;
  private readonly ffmpeg: string | null;
  private readonly skipPngUpTo: number;
  /** Where previews are made, under the node's work dir: nothing is left behind in the system's temp folder. */
  private readonly dir: string;
  private made: Promise<unknown> | null = null;

  constructor(deps: { client: MasterClient; log: Logger; blender: string; workDir: string; env?: NodeJS.ProcessEnv }) {
    this.client = deps.client;
    this.dir = join(deps.workDir, 'previews');
    this.log = deps.log;
    this.blender = deps.blender;
    ({ tool: this.tool, ffmpeg: this.ffmpeg } = choosePreviewTool(deps.env));
    this.skipPngUpTo = driverPreviewSettings(deps.env)?.skip_png_up_to ?? 0;
    this.log.info(
      this.tool === 'off'
        ? 'frame previews are off (FARM_PREVIEWS=off)'
        : this.tool === 'ffmpeg'
          ? `frame previews made with ${this.ffmpeg} (a hot Blender writes those of its own frames)`
          : 'frame previews made with Blender (install ffmpeg for faster previews, and previews of PNG/JPEG frames)',
    );
  }

  /**
   * Uploads the preview of an uploaded frame: the one the hot Blender wrote when there is one,
   * otherwise one made here. Never throws.
   */
  async send(target: PreviewTarget): Promise<void> {
    if (this.tool === 'off') return;
    const { previewPath, ...frame } = target;
    if (previewPath) {
      try {
        await this.client.uploadPreview({ ...frame, path: previewPath, contentType: 'image/jpeg' });
        return;
      } catch (err) {
        // A preview file that is not there is made again below; a failed upload is not retried.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          this.log.warn(`preview of frame ${target.frame}: ${(err as Error).message.split('\n')[0]}`);
          return;
        }
      } finally {
        await rm(previewPath, { force: true }).catch(() => {});
      }
    }
    // The hot Blender skips these too (hot_render.py). An unreadable frame fails below, logged.
    const width = this.skipPngUpTo > 0 ? await pngWidth(target.path).catch(() => null) : null;
    if (width !== null && width <= this.skipPngUpTo) return;
    await (this.made ??= mkdir(this.dir, { recursive: true }));
    const out = join(this.dir, `${target.taskId}-${target.frame}.jpg`);
    try {
      if (!(await makePreview(target.path, out, this.tool, { ffmpeg: this.ffmpeg, blender: this.blender }))) return;
      await this.client.uploadPreview({ ...frame, path: out, contentType: 'image/jpeg' });
    } catch (err) {
      this.log.warn(`preview of frame ${target.frame}: ${(err as Error).message.split('\n')[0]}`);
    } finally {
      await rm(out, { force: true }).catch(() => {});
    }
  }
}
