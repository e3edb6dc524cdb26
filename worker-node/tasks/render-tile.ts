/**
 * A tile task: one tile of a split still, rendered by Blender with a cropped render border
 * (blender/tile-border.ts) and uploaded as the task's output for a stitch task to put together.
 */
import type { TaskAssignment } from '../../protocol/schemas.ts';
import { tileBorderExpr, tileGrid, type Tile } from '../blender/tile-border.ts';
import { readRenderSize, type RenderSize } from '../blender/tile-render-size.ts';
import { TaskFailure } from './task-failure.ts';

/** Render sizes of recent blends: a node often gets several tiles of one frame, then its stitch. */
const knownSizes = new Map<string, RenderSize>();
const KNOWN_SIZES_KEPT = 32;

/**
 * The size `blendPath`'s scene renders at, remembered per path: cached blends are named by their
 * content hash (blend-cache.ts), so one path is always one file. Saves a Blender start (seconds)
 * for every tile after the first and for the stitch.
 */
export async function sceneRenderSize(blender: string, blendPath: string, signal?: AbortSignal): Promise<RenderSize> {
  const known = knownSizes.get(blendPath);
  if (known) return known;
  const size = await readRenderSize(blender, blendPath, { signal });
  if (knownSizes.size >= KNOWN_SIZES_KEPT) knownSizes.delete(knownSizes.keys().next().value!);
  knownSizes.set(blendPath, size);
  return size;
}

/**
 * The tile of `task` and the `--python-expr` that renders exactly its pixels: the scene's
 * render size is read from the file first, and the grid computed from it, as the stitch task
 * computes it again. Throws a TaskFailure when the task or the file cannot make a tile.
 */
export async function planTileRender(
  blender: string,
  blendPath: string,
  task: TaskAssignment,
  signal?: AbortSignal,
): Promise<{ tile: Tile; pythonExpr: string }> {
  if (!task.tile || task.frames.length !== 1) {
    throw new TaskFailure(
      'tile_failed',
      `a tile task needs one frame and a tile; got frames ${task.frames.slice(0, 5).join(', ')} and tile ${JSON.stringify(task.tile)}`,
    );
  }
  const { index, count } = task.tile;
  try {
    const { width, height } = await sceneRenderSize(blender, blendPath, signal);
    const tile = tileGrid(width, height, count)[index];
    if (!tile) throw new Error(`tile ${index} of ${count} does not exist`);
    return { tile, pythonExpr: tileBorderExpr(tile.rect, width, height) };
  } catch (err) {
    throw new TaskFailure('tile_failed', `planning tile ${index} of ${count}: ${(err as Error).message}`, { cause: err });
  }
}
