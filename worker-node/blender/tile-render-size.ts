/**
 * The size in pixels a scene renders at, which split stills are planned on (tileGrid needs it
 * and tileBorderExpr checks it): resolution times percentage, as Blender computes it.
 */
import { jsonLineProbe, runProbe } from './launch.ts';

export interface RenderSize {
  width: number;
  height: number;
}

/**
 * The current scene's output size. Blender's own rule is integer arithmetic, resolution_x *
 * percentage / 100 rounded down (65 at 50% is 32).
 */
export const renderSizeProbe = jsonLineProbe<RenderSize>(
  'FARM_RENDER_SIZE',
  '{"width": r.resolution_x * r.resolution_percentage // 100, "height": r.resolution_y * r.resolution_percentage // 100}',
  ({ width, height }) =>
    Number.isInteger(width) && Number.isInteger(height) && (width as number) > 0 && (height as number) > 0
      ? { width: width as number, height: height as number }
      : undefined,
);

/**
 * Opens `blendPath` in Blender (scripts in the file stay off) and returns the size its scene
 * renders at. Throws with Blender's last lines when it cannot be read.
 */
export function readRenderSize(blender: string, blendPath: string, options: { signal?: AbortSignal } = {}): Promise<RenderSize> {
  return runProbe(blender, blendPath, renderSizeProbe, 'the render size', options);
}
