/**
 * The size in pixels a scene renders at, which split stills are planned on (tileGrid needs it
 * and tileBorderExpr checks it): resolution times percentage, as Blender computes it.
 */
import { runProcess } from '../process/run-process.ts';

export interface RenderSize {
  width: number;
  height: number;
}

/** Marks the line renderSizeExpr prints. */
export const RENDER_SIZE_LINE_PREFIX = 'FARM_RENDER_SIZE ';

/**
 * A --python-expr printing the current scene's output size on one line. Blender's own rule
 * is integer arithmetic, resolution_x * percentage / 100 rounded down (65 at 50% is 32).
 * It can ride along with any Blender run; parseRenderSizeLine reads the line back.
 */
export const renderSizeExpr =
  'import bpy, json; r = bpy.context.scene.render; ' +
  `print(${JSON.stringify(RENDER_SIZE_LINE_PREFIX)} + json.dumps({"width": r.resolution_x * r.resolution_percentage // 100, "height": r.resolution_y * r.resolution_percentage // 100}), flush=True)`;

/** The size from a line printed by renderSizeExpr; undefined for any other line. */
export function parseRenderSizeLine(line: string): RenderSize | undefined {
  if (!line.startsWith(RENDER_SIZE_LINE_PREFIX)) return undefined;
  try {
    const { width, height } = JSON.parse(line.slice(RENDER_SIZE_LINE_PREFIX.length)) as { width: unknown; height: unknown };
    if (Number.isInteger(width) && Number.isInteger(height) && (width as number) > 0 && (height as number) > 0) {
      return { width: width as number, height: height as number };
    }
  } catch {
    // Not our JSON after all: treat it as any other line.
  }
  return undefined;
}

/**
 * Opens `blendPath` in Blender (scripts in the file stay off) and returns the size its scene
 * renders at. Throws with Blender's last lines when it cannot be read.
 */
export async function readRenderSize(blender: string, blendPath: string, options: { signal?: AbortSignal } = {}): Promise<RenderSize> {
  const args = ['-b', '--factory-startup', '--disable-autoexec', '-noaudio', blendPath, '--python-exit-code', '1', '--python-expr', renderSizeExpr];
  let found: RenderSize | undefined;
  const result = await runProcess(blender, args, { signal: options.signal, onLine: (line) => (found ??= parseRenderSizeLine(line)) });
  if (!found) {
    throw new Error(`reading the render size of ${blendPath}: Blender exited with ${result.exitCode ?? result.signal} and printed none\n${result.tail.slice(-20).join('\n')}`);
  }
  return found;
}
