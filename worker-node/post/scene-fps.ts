/**
 * A scene's frame rate, as Blender stores it: an integer `fps` divided by a float `fps_base`
 * (23.976 is 24 / 1.001), and as the exact fraction ffmpeg takes (24000/1001).
 */
import { jsonLineProbe, runProbe } from '../blender/launch.ts';

/** Blender's `scene.render.fps` and `scene.render.fps_base`; frames per second is fps / fpsBase. */
export interface SceneFps {
  fps: number;
  fpsBase: number;
}

/** The current scene's frame rate, as a probe that can also ride along with a render. */
export const sceneFpsProbe = jsonLineProbe<SceneFps>('FARM_SCENE_FPS', '{"fps": r.fps, "fps_base": r.fps_base}', ({ fps, fps_base: fpsBase }) =>
  typeof fps === 'number' && typeof fpsBase === 'number' && fps > 0 && fpsBase > 0 ? { fps, fpsBase } : undefined,
);

/**
 * Opens `blendPath` in Blender (scripts in the file stay off) and returns its scene's frame
 * rate. Throws with Blender's last lines when it cannot be read.
 */
export function readSceneFps(blender: string, blendPath: string, options: { signal?: AbortSignal } = {}): Promise<SceneFps> {
  return runProbe(blender, blendPath, sceneFpsProbe, 'the frame rate', options);
}

/** A frame rate as a reduced fraction, and as ffmpeg writes it ("24000/1001"). */
export interface FrameRate {
  num: number;
  den: number;
  text: string;
}

/** NTSC rates, n * 1000 / 1001, that a decimal like 29.97 is meant to be. */
const NTSC_BASES = [24, 30, 48, 60, 120, 240];

/**
 * The exact fraction for a frame rate given as Blender's pair (24 and 1.001 give 24000/1001;
 * fps_base is stored as a 32-bit float, so it is read to six decimals) or as frames per
 * second (23.976 and 29.97 are taken as the NTSC rates they stand for; other decimals to
 * three places). Throws on a rate that is not positive.
 */
export function frameRateOf(rate: SceneFps | number): FrameRate {
  let num: number;
  let den: number;
  if (typeof rate === 'number') {
    if (!(rate > 0 && Number.isFinite(rate))) throw new Error(`frame rate must be a positive number, got ${rate}`);
    const ntsc = NTSC_BASES.find((n) => Math.abs(rate - (n * 1000) / 1001) < 0.005);
    [num, den] = ntsc !== undefined ? [ntsc * 1000, 1001] : [Math.round(rate * 1000), 1000];
  } else {
    if (!(rate.fps > 0 && rate.fpsBase > 0 && Number.isFinite(rate.fps) && Number.isFinite(rate.fpsBase))) {
      throw new Error(`frame rate must have a positive fps and fps_base, got ${rate.fps} / ${rate.fpsBase}`);
    }
    num = Math.round(rate.fps * 1_000_000);
    den = Math.round(rate.fpsBase * 1_000_000);
  }
  const divisor = gcd(num, den);
  num /= divisor;
  den /= divisor;
  return { num, den, text: `${num}/${den}` };
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}
