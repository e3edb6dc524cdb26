/**
 * Split stills: tiles cut by tileGrid, rendered by separate real Blender processes through
 * tileBorderExpr, stitched by stitchTiles, must equal one whole render pixel for pixel.
 * Needs Blender 3.x as $BLENDER or `blender` on PATH.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';
import { classifyBlenderFailure } from '../../worker-node/blender/classify-failure.ts';
import { buildRenderArgs } from '../../worker-node/blender/render-args.ts';
import { tileBorderExpr, tileGrid, type TileRect } from '../../worker-node/blender/tile-border.ts';
import { readRenderSize, renderSizeProbe } from '../../worker-node/blender/tile-render-size.ts';
import { runProcess } from '../../worker-node/process/run-process.ts';
import { stitchTiles } from '../../worker-node/post/stitch-tiles.ts';

const BLENDER = process.env.BLENDER ?? 'blender';
const SCENES = new URL('../scenes/', import.meta.url).pathname;

function makeStillScene(out: string, args: string[]): void {
  const result = spawnSync(BLENDER, ['-b', '--factory-startup', '--python', join(SCENES, 'make_still_scene.py'), '--', out, ...args], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`make_still_scene.py failed (${result.status ?? result.signal}):\n${result.stdout}${result.stderr}`);
}

/** A PNG's header facts and a hash of its samples at full bit depth (16-bit samples are not squeezed to 8). */
function readPixels(path: string) {
  const png = PNG.sync.read(readFileSync(path), { skipRescale: true });
  const data = png.data as unknown as Uint8Array | Uint16Array;
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return {
    width: png.width,
    height: png.height,
    depth: png.depth,
    colorType: png.colorType,
    data,
    pixelHash: createHash('sha256').update(bytes).digest('hex'),
  };
}

/** The bounding box of the pixels with alpha above 0, y from the top. */
function opaqueBox(path: string): TileRect {
  const { width, height, data } = readPixels(path);
  let [x0, y0, x1, y1] = [Infinity, Infinity, -1, -1];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (data[(y * width + x) * 4 + 3]! > 0) [x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x), Math.max(y1, y)];
    }
  }
  return { x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1 };
}

/** Blender as the task runner would start it; throws with Blender's reading of the failure. */
async function blender(args: string[]): Promise<string[]> {
  const result = await runProcess(BLENDER, args, { tailLines: 1000 });
  if (result.exitCode !== 0) throw new Error(`${classifyBlenderFailure(result).message}\n${result.tail.join('\n')}`);
  return result.tail;
}

describe('tileGrid', () => {
  const area = (r: TileRect) => r.width * r.height;

  it.each([
    [64, 48, 1],
    [64, 48, 3],
    [64, 48, 4],
    [64, 48, 7],
    [1920, 1080, 6],
    [1920, 1080, 5],
    [101, 37, 13],
    [3, 1000, 4],
    [5, 5, 25],
  ])('%ix%i in %i tiles: exactly that many non-empty tiles covering every pixel once', (width, height, n) => {
    const tiles = tileGrid(width, height, n);
    expect(tiles).toHaveLength(n);
    expect(tiles.map((t) => t.index)).toEqual([...Array(n).keys()]);
    const covered = new Uint8Array(width * height);
    for (const { rect } of tiles) {
      expect(rect.width).toBeGreaterThan(0);
      expect(rect.height).toBeGreaterThan(0);
      for (let y = rect.y; y < rect.y + rect.height; y++) for (let x = rect.x; x < rect.x + rect.width; x++) covered[y * width + x]!++;
    }
    expect(covered.every((count) => count === 1)).toBe(true);
    // Balanced work: no tile more than about 1.5x the smallest (rounding aside).
    const areas = tiles.map((t) => area(t.rect));
    expect(Math.max(...areas)).toBeLessThanOrEqual(Math.ceil(Math.min(...areas) * 1.5) + width + height);
  });

  it('cuts 4 tiles as 2x2 quadrants and 3 tiles of a landscape frame as two rows of equal-area tiles', () => {
    expect(tileGrid(64, 48, 4).map((t) => t.rect)).toEqual([
      { x: 0, y: 0, width: 32, height: 24 },
      { x: 32, y: 0, width: 32, height: 24 },
      { x: 0, y: 24, width: 32, height: 24 },
      { x: 32, y: 24, width: 32, height: 24 },
    ]);
    expect(tileGrid(64, 48, 3).map((t) => t.rect)).toEqual([
      { x: 0, y: 0, width: 32, height: 32 },
      { x: 32, y: 0, width: 32, height: 32 },
      { x: 0, y: 32, width: 64, height: 16 },
    ]);
  });

  it('refuses more tiles than pixels and sizes that are not whole numbers', () => {
    expect(() => tileGrid(2, 2, 5)).toThrow(/cannot split 2x2 pixels into 5 tiles/);
    expect(() => tileGrid(64, 48, 0)).toThrow(/tile count must be a whole number/);
    expect(() => tileGrid(64.5, 48, 2)).toThrow(/width must be a whole number/);
  });
});

describe('tileBorderExpr', () => {
  it('turns a top-down pixel rectangle into a bottom-up border on pixel centres', () => {
    const expr = tileBorderExpr({ x: 13, y: 0, width: 9, height: 16 }, 22, 23);
    // x 13..22 of 22; y rows 0..16 from the top are 7..23 from the bottom.
    expect(expr).toContain(`r.border_min_x, r.border_max_x, r.border_min_y, r.border_max_y = ${13.5 / 22}, 1.0, ${7.5 / 23}, 1.0`);
    expect(expr).toContain('r.use_crop_to_border = True');
    // Both make pixels depend on others (see tileBorderExpr); without them tiles do not stitch exactly.
    expect(expr).toContain('r.dither_intensity = 0.0; s.cycles.use_adaptive_sampling = False');
    expect(expr).not.toContain('\n');
    expect(() => tileBorderExpr({ x: 20, y: 0, width: 3, height: 1 }, 22, 23)).toThrow(/not a non-empty pixel rectangle inside 22x23/);
  });
});

describe('split stills with real Blender', () => {
  const dir = tempDir('tiles-stitch');
  const still = join(dir, 'still.blend');
  const rgb16 = "import bpy; i = bpy.context.scene.render.image_settings; i.color_depth = '16'; i.color_mode = 'RGB'";

  beforeAll(async () => {
    makeStillScene(still, ['--width', '64', '--height', '48', '--samples', '16']);
    // Both whole renders in one Blender run (it acts on its arguments in order), as a plain
    // `blender -b FILE -o X -f 1` with nothing of the farm's: 8-bit RGBA, then 16-bit RGB.
    await blender([
      '-b',
      '--factory-startup',
      '--disable-autoexec',
      still,
      '-o',
      join(dir, 'whole_#'),
      '-f',
      '1',
      '--python-expr',
      rgb16,
      '-o',
      join(dir, 'whole16_#'),
      '-f',
      '1',
    ]);
  }, 60_000);

  it('Blender renders exactly the rectangle it is given: cropped size and, uncropped, position (one Blender run)', async () => {
    const rects: TileRect[] = [
      { x: 13, y: 0, width: 9, height: 23 },
      { x: 7, y: 9, width: 8, height: 7 },
      { x: 0, y: 0, width: 1, height: 1 },
      { x: 21, y: 22, width: 1, height: 1 },
      { x: 1, y: 2, width: 20, height: 19 },
      { x: 0, y: 0, width: 22, height: 23 },
    ];
    const uncrop = 'import bpy; bpy.context.scene.render.use_crop_to_border = False';
    // 22x23: 13/22 and 7/23 are the smallest fractions whose 32-bit float times the size falls
    // just under the whole pixel, the trap a naive x / width border walks into. One sample: only
    // the shape of the result matters here.
    const odd = 'import bpy; s = bpy.context.scene; s.render.resolution_x, s.render.resolution_y, s.cycles.samples = 22, 23, 1';
    // Blender acts on its arguments in order, so each -f renders with the snippets before it.
    const args = ['-b', '--factory-startup', '--disable-autoexec', '-noaudio', still, '--python-exit-code', '1', '--python-expr', odd, '-x', '1'];
    rects.forEach((rect, i) => {
      const expr = tileBorderExpr(rect, 22, 23);
      args.push('--python-expr', expr, '-o', join(dir, `crop${i}_#`), '-f', '1');
      args.push('--python-expr', uncrop, '-o', join(dir, `full${i}_#`), '-f', '1');
    });
    // The naive border 13 / 22: float32(13 / 22) * 22 = 12.999999, truncated to pixel 12.
    const naive =
      'import bpy; r = bpy.context.scene.render; r.use_border = r.use_crop_to_border = True; r.border_min_x, r.border_max_x, r.border_min_y, r.border_max_y = 13 / 22, 1.0, 0.0, 1.0';
    args.push('--python-expr', naive, '-o', join(dir, 'naive_#'), '-f', '1');
    // The size tiles are planned on: 65x49 at 50% renders 32x24 (Blender rounds down).
    args.push('--python-expr', 'import bpy; r = bpy.context.scene.render; r.resolution_x, r.resolution_y, r.resolution_percentage = 65, 49, 50');
    args.push('--python-expr', renderSizeProbe.expr);
    const output = await blender(args);
    expect(output.map((line) => renderSizeProbe.parse(line)).filter(Boolean)).toEqual([{ width: 32, height: 24 }]);

    rects.forEach((rect, i) => {
      const cropped = readPixels(join(dir, `crop${i}_1.png`));
      expect({ width: cropped.width, height: cropped.height }, `tile ${i}`).toEqual({ width: rect.width, height: rect.height });
      expect(opaqueBox(join(dir, `full${i}_1.png`)), `tile ${i} uncropped`).toEqual(rect);
    });
    // One pixel more than asked for: why tileBorderExpr puts inner edges on pixel centres.
    expect(readPixels(join(dir, 'naive_1.png')).width).toBe(10);
  });

  it('readRenderSize reads the size a .blend renders at', async () => {
    expect(await readRenderSize(BLENDER, still)).toEqual({ width: 64, height: 48 });
  });

  /** Renders `n` tiles in separate Blender processes (two at a time) and stitches them. */
  async function renderTilesAndStitch(blend: string, n: number, tag: string, extraExprs: string[] = []): Promise<string> {
    const tiles = tileGrid(64, 48, n);
    const queue = [...tiles];
    const worker = async () => {
      for (let tile = queue.shift(); tile; tile = queue.shift()) {
        const pythonExprs = [...extraExprs, tileBorderExpr(tile.rect, 64, 48)];
        await blender(buildRenderArgs({ blendPath: blend, outputPattern: join(dir, `${tag}-tile${tile.index}_#`), frames: [1], pythonExprs, threads: 1 }));
      }
    };
    await Promise.all([worker(), worker()]);
    const stitched = join(dir, `${tag}-stitched.png`);
    await stitchTiles(
      tiles.map((t) => ({ rect: t.rect, path: join(dir, `${tag}-tile${t.index}_1.png`) })),
      64,
      48,
      stitched,
    );
    return stitched;
  }

  it('4 tiles of a 64x48 Cycles still, rendered apart and stitched, equal the whole render pixel for pixel (8-bit RGBA)', async () => {
    const stitched = await renderTilesAndStitch(still, 4, 'quad');
    const whole = readPixels(join(dir, 'whole_1.png'));
    const tiled = readPixels(stitched);
    expect({ ...tiled, data: undefined }).toEqual({ ...whole, data: undefined });
    expect(whole).toMatchObject({ width: 64, height: 48, depth: 8, colorType: 6 });
  }, 120_000);

  it('3 tiles (rows of 2 and 1) of a 16-bit RGB still equal the whole render, keeping 16 bits and no alpha', async () => {
    const stitched = await renderTilesAndStitch(still, 3, 'rgb16', [rgb16]);
    const whole = readPixels(join(dir, 'whole16_1.png'));
    const tiled = readPixels(stitched);
    expect(whole).toMatchObject({ depth: 16, colorType: 2 });
    expect({ ...tiled, data: undefined }).toEqual({ ...whole, data: undefined });
  }, 120_000);

  it('a tile planned for another resolution, of an Eevee scene, or of a scene whose compositor has a Glare node fails instead of leaving seams', async () => {
    const tile = tileBorderExpr({ x: 0, y: 0, width: 32, height: 24 }, 64, 48);
    const plannedForLarger = tileBorderExpr({ x: 0, y: 0, width: 64, height: 48 }, 128, 96);
    const eevee = "import bpy; bpy.context.scene.render.engine = 'BLENDER_EEVEE'";
    const glare =
      "import bpy; s = bpy.context.scene; s.use_nodes = True; s.render.use_compositing = True; s.node_tree.nodes.new('CompositorNodeGlare').name = 'Glow'";
    const runs = [[plannedForLarger], [eevee, tile], [glare, tile]].map((pythonExprs, i) =>
      runProcess(BLENDER, buildRenderArgs({ blendPath: still, outputPattern: join(dir, `refused${i}_#`), frames: [1], pythonExprs })),
    );
    const [wrongSize, onEevee, withGlare] = await Promise.all(runs);
    for (const result of [wrongSize!, onEevee!, withGlare!]) expect(result.exitCode).toBe(1);
    expect(classifyBlenderFailure(wrongSize!).message).toContain(
      'RuntimeError: split still: the scene renders 64x48 pixels but its tiles were planned for 128x96',
    );
    expect(classifyBlenderFailure(onEevee!).message).toContain(
      'split still: only Cycles renders tiles that stitch without seams; this scene renders with BLENDER_EEVEE',
    );
    expect(classifyBlenderFailure(withGlare!).message).toContain('split still: the compositor would see one tile at a time (nodes Glow)');
  });
});

describe('stitchTiles', () => {
  const dir = tempDir('stitch-unit');

  /** Writes a PNG of `rect`'s size whose pixel values encode their position in the whole image. */
  function writeTile(name: string, rect: TileRect, bitDepth: 8 | 16, colorType: 0 | 2 | 4 | 6): string {
    const values = bitDepth === 16 ? new Uint16Array(rect.width * rect.height * 4) : new Uint8Array(rect.width * rect.height * 4);
    const max = bitDepth === 16 ? 65535 : 255;
    for (let y = 0; y < rect.height; y++) {
      for (let x = 0; x < rect.width; x++) {
        const gx = rect.x + x;
        const gy = rect.y + y;
        const grey = colorType === 0 || colorType === 4;
        const i = (y * rect.width + x) * 4;
        values[i] = (gx * 37 + gy * 1009) % max;
        values[i + 1] = grey ? values[i]! : (gx * 7919 + gy) % max;
        values[i + 2] = grey ? values[i]! : (gy * 104729 + gx * 3) % max;
        values[i + 3] = colorType === 4 || colorType === 6 ? (gx + gy * 13) % max : max;
      }
    }
    const data = bitDepth === 16 ? Buffer.from(values.buffer) : Buffer.from(values.buffer, values.byteOffset, values.byteLength);
    const path = join(dir, name);
    writeFileSync(
      path,
      PNG.sync.write(Object.assign(new PNG({ width: rect.width, height: rect.height }), { data }), {
        bitDepth,
        colorType,
        inputColorType: 6,
        inputHasAlpha: true,
      }),
    );
    return path;
  }

  it.each([
    [8, 6],
    [8, 2],
    [8, 0],
    [16, 6],
    [16, 2],
    [16, 4],
  ] as const)('%i-bit colour type %i tiles stitch into the same image as one tile of the whole, in the same format', async (bitDepth, colorType) => {
    const tiles = tileGrid(37, 23, 5).map(({ index, rect }) => ({
      rect,
      path: writeTile(`t${bitDepth}-${colorType}-${index}.png`, rect, bitDepth, colorType),
    }));
    const whole = writeTile(`whole${bitDepth}-${colorType}.png`, { x: 0, y: 0, width: 37, height: 23 }, bitDepth, colorType);
    const out = join(dir, `stitched${bitDepth}-${colorType}.png`);
    expect(await stitchTiles(tiles, 37, 23, out)).toEqual({ width: 37, height: 23, bitDepth, colorType });
    const stitched = readPixels(out);
    expect({ ...stitched, data: undefined }).toEqual({ ...readPixels(whole), data: undefined });
  });

  it('refuses tiles that overlap, leave a hole, have the wrong size or mix formats', async () => {
    const out = join(dir, 'bad.png');
    const a = writeTile('a.png', { x: 0, y: 0, width: 4, height: 4 }, 8, 6);
    const b = writeTile('b.png', { x: 4, y: 0, width: 4, height: 4 }, 8, 6);
    const b16 = writeTile('b16.png', { x: 4, y: 0, width: 4, height: 4 }, 16, 6);
    await expect(
      stitchTiles(
        [
          { rect: { x: 0, y: 0, width: 4, height: 4 }, path: a },
          { rect: { x: 3, y: 0, width: 4, height: 4 }, path: b },
        ],
        8,
        4,
        out,
      ),
    ).rejects.toThrow(/b.png overlaps another tile at pixel \(3, 0\)/);
    await expect(stitchTiles([{ rect: { x: 0, y: 0, width: 4, height: 4 }, path: a }], 8, 4, out)).rejects.toThrow(/no tile covers pixel \(4, 0\)/);
    await expect(
      stitchTiles(
        [
          { rect: { x: 0, y: 0, width: 4, height: 4 }, path: a },
          { rect: { x: 4, y: 0, width: 4, height: 4 }, path: a.replace('a.png', 'missing.png') },
        ],
        8,
        4,
        out,
      ),
    ).rejects.toThrow(/reading tile .*missing.png/);
    await expect(
      stitchTiles(
        [
          { rect: { x: 0, y: 0, width: 5, height: 4 }, path: a },
          { rect: { x: 5, y: 0, width: 3, height: 4 }, path: b },
        ],
        8,
        4,
        out,
      ),
    ).rejects.toThrow(/a.png is 4x4 pixels but its rectangle .* is 5x4/);
    await expect(
      stitchTiles(
        [
          { rect: { x: 0, y: 0, width: 4, height: 4 }, path: a },
          { rect: { x: 4, y: 0, width: 4, height: 4 }, path: b16 },
        ],
        8,
        4,
        out,
      ),
    ).rejects.toThrow(/b16.png is 16-bit colour type 6 but the first tile is 8-bit/);
  });
});
