/**
 * A stitch task: the last step of a split still. Downloads the job's rendered tiles, puts them
 * back into the whole frame (post/stitch-tiles.ts) and uploads it as the job's frame.
 */
import { extname, join } from 'node:path';
import { tileGrid } from '../blender/tile-border.ts';
import { stitchTiles } from '../post/stitch-tiles.ts';
import { downloadInputs } from './download-inputs.ts';
import { sceneRenderSize } from './render-tile.ts';
import type { InputTaskContext } from './input-task.ts';
import { TaskFailure } from './task-failure.ts';

/**
 * Stitches tiles 0..count-1 of the task's one frame. The grid is computed again from the
 * scene's render size exactly as each tile task computed it (render-tile.ts), so the rectangles
 * match the tiles without the master having to carry them.
 */
export async function stitchTask(ctx: InputTaskContext): Promise<string> {
  const { task } = ctx;
  const frame = task.frames[0]!;
  if (task.frames.length !== 1 || !task.tile)
    throw new TaskFailure(
      'stitch_failed',
      `a stitch task needs one frame and a tile count; got frames ${task.frames.slice(0, 5).join(', ')} and tile ${JSON.stringify(task.tile)}`,
    );
  const { count } = task.tile;
  const { width, height } = await sceneRenderSize(ctx.blender, ctx.blendPath, ctx.signal);
  const tiles = tileGrid(width, height, count);
  ctx.note(`stitching ${count} tiles of frame ${frame} into ${width}x${height}`);
  const paths = await downloadInputs(
    ctx,
    tiles.map((t) => t.index),
    { prefix: 'tile_', describe: (n) => `tile ${n} of frame ${frame}` },
  );
  for (const [n, path] of paths) {
    if (extname(path) !== '.png')
      throw new TaskFailure('stitch_failed', `tile ${n} of frame ${frame} is not a PNG (${extname(path)}); tiles are rendered as PNG`);
  }
  const out = join(ctx.dir, `frame_${String(frame).padStart(6, '0')}.png`);
  try {
    await stitchTiles(
      tiles.map((t) => ({ rect: t.rect, path: paths.get(t.index)! })),
      width,
      height,
      out,
    );
  } catch (err) {
    throw new TaskFailure('stitch_failed', (err as Error).message, { cause: err });
  }
  const ids = { workerId: ctx.workerId, taskId: task.task_id, leaseId: task.lease_id, frame };
  await ctx.client.uploadFrame({ ...ids, path: out, renderMs: null });
  await ctx.previews?.send({ ...ids, path: out });
  return `stitched ${count} tiles into frame ${frame} (${width}x${height})`;
}
