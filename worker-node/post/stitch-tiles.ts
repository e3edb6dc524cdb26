/**
 * Split stills, last step: puts the PNG tiles that different nodes rendered (see
 * worker-node/blender/tile-border.ts) back into one image, keeping the tiles' bit depth and
 * colour type, so the result is the file one whole render would have written, pixel for pixel.
 */
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { PNG, type ColorType } from 'pngjs';
import type { TileRect } from '../blender/tile-border.ts';

/** A rendered tile: where it goes in the image, and its PNG on disk. */
export interface TileFile {
  rect: TileRect;
  path: string;
}

export interface StitchedImage {
  width: number;
  height: number;
  bitDepth: 8 | 16;
  /** PNG colour type: 0 grey, 2 RGB, 4 grey + alpha, 6 RGBA. */
  colorType: ColorType;
}

/**
 * Stitches `tiles` into one `width` x `height` PNG at `outPath` (written to a temporary name
 * and renamed, so a reader never sees half a file). Every tile must be a PNG of exactly its
 * rectangle's size, all of one bit depth (8 or 16) and colour type, and the rectangles must
 * cover the image exactly once; anything else throws, naming the tile, rather than writing
 * an image with holes or seams. Rectangles count y from the top, as PNG rows do.
 */
export async function stitchTiles(tiles: readonly TileFile[], width: number, height: number, outPath: string): Promise<StitchedImage> {
  if (tiles.length === 0) throw new Error('stitching tiles: no tiles given');
  checkCoverage(tiles, width, height);

  let format: { bitDepth: 8 | 16; colorType: ColorType; gamma: number } | undefined;
  // Filled as RGBA whatever the tiles' colour type: pngjs decodes every PNG to RGBA, and
  // converts back to the tiles' own colour type on writing.
  let pixels: Uint8Array | Uint16Array | undefined;
  for (const tile of tiles) {
    const png = await readTile(tile);
    const depth = png.depth;
    if (depth !== 8 && depth !== 16) throw new Error(`stitching tiles: ${tile.path} has bit depth ${depth}; only 8- and 16-bit PNG tiles can be stitched`);
    if (png.colorType !== 0 && png.colorType !== 2 && png.colorType !== 4 && png.colorType !== 6) {
      throw new Error(`stitching tiles: ${tile.path} has PNG colour type ${png.colorType as number} (palette); Blender writes grey, RGB or RGBA`);
    }
    if (!format) {
      format = { bitDepth: depth, colorType: png.colorType, gamma: png.gamma };
      pixels = depth === 16 ? new Uint16Array(width * height * 4) : new Uint8Array(width * height * 4);
    } else if (format.bitDepth !== depth || format.colorType !== png.colorType) {
      throw new Error(
        `stitching tiles: ${tile.path} is ${depth}-bit colour type ${png.colorType} but the first tile is ${format.bitDepth}-bit colour type ${format.colorType}; all tiles must come from one render setup`,
      );
    }
    // 16-bit tiles decode (skipRescale) to a Uint16Array in pngjs, typed as a Buffer.
    const source = png.data as unknown as Uint8Array | Uint16Array;
    const rowValues = tile.rect.width * 4;
    for (let row = 0; row < tile.rect.height; row++) {
      const from = row * rowValues;
      const to = ((tile.rect.y + row) * width + tile.rect.x) * 4;
      pixels!.set(source.subarray(from, from + rowValues), to);
    }
  }

  const { bitDepth, colorType, gamma } = format!;
  // pngjs takes 16-bit input as a Buffer over native-endian 16-bit values starting at offset 0.
  const data = bitDepth === 16 ? Buffer.from(pixels!.buffer) : Buffer.from(pixels!.buffer, pixels!.byteOffset, pixels!.byteLength);
  const encoded = PNG.sync.write(Object.assign(new PNG({ width, height }), { data, gamma }), {
    bitDepth,
    colorType,
    inputColorType: 6,
    inputHasAlpha: true,
  });
  const partPath = `${outPath}.part`;
  try {
    await writeFile(partPath, encoded);
    await rename(partPath, outPath);
  } catch (err) {
    await rm(partPath, { force: true });
    throw new Error(`writing stitched image ${outPath}: ${(err as Error).message}`, { cause: err });
  }
  return { width, height, bitDepth, colorType };
}

async function readTile(tile: TileFile): Promise<ReturnType<typeof PNG.sync.read>> {
  let png: ReturnType<typeof PNG.sync.read>;
  try {
    // skipRescale keeps 16-bit samples as they are instead of squeezing them into 8 bits.
    png = PNG.sync.read(await readFile(tile.path), { skipRescale: true });
  } catch (err) {
    throw new Error(`reading tile ${tile.path}: ${(err as Error).message}`, { cause: err });
  }
  if (png.width !== tile.rect.width || png.height !== tile.rect.height) {
    throw new Error(
      `stitching tiles: ${tile.path} is ${png.width}x${png.height} pixels but its rectangle ${JSON.stringify(tile.rect)} is ${tile.rect.width}x${tile.rect.height}; was it rendered without crop to border?`,
    );
  }
  return png;
}

/** Throws unless the rectangles lie inside the image and cover every pixel exactly once. */
function checkCoverage(tiles: readonly TileFile[], width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`stitching tiles: image size ${width}x${height} is not a positive whole number of pixels`);
  }
  const covered = new Uint8Array(width * height);
  for (const { rect, path } of tiles) {
    const inside =
      [rect.x, rect.y, rect.width, rect.height].every(Number.isInteger) &&
      rect.x >= 0 &&
      rect.y >= 0 &&
      rect.width >= 1 &&
      rect.height >= 1 &&
      rect.x + rect.width <= width &&
      rect.y + rect.height <= height;
    if (!inside) throw new Error(`stitching tiles: the rectangle of ${path}, ${JSON.stringify(rect)}, is not inside ${width}x${height}`);
    for (let y = rect.y; y < rect.y + rect.height; y++) {
      for (let x = rect.x; x < rect.x + rect.width; x++) {
        if (covered[y * width + x]++ !== 0) throw new Error(`stitching tiles: ${path} overlaps another tile at pixel (${x}, ${y}) from the top left`);
      }
    }
  }
  const hole = covered.indexOf(0);
  if (hole >= 0) throw new Error(`stitching tiles: no tile covers pixel (${hole % width}, ${Math.floor(hole / width)}) from the top left`);
}
