/** Decoding rendered frames, so tests compare pixels rather than file bytes. */
import { createHash } from 'node:crypto';
import { PNG } from 'pngjs';

export interface DecodedImage {
  width: number;
  height: number;
  /** SHA-256 of the RGBA pixel data: equal hashes mean pixel-identical images. */
  pixelHash: string;
  data: Buffer;
}

export function decodePng(bytes: Buffer | Uint8Array): DecodedImage {
  const png = PNG.sync.read(Buffer.from(bytes));
  return {
    width: png.width,
    height: png.height,
    pixelHash: createHash('sha256').update(png.data).digest('hex'),
    data: png.data,
  };
}
