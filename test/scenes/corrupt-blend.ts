/**
 * Makes broken .blend files from good ones, for tests of how the farm reports them.
 */
import { mkdir, open, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Enough for a valid header and the first block headers, far too little for the DNA block. */
const TRUNCATED_BLEND_BYTES = 2048;

/**
 * Writes the first `keepBytes` bytes of `srcBlend` to `outPath`: a file that starts with a
 * valid "BLENDER" header but is cut off. Blender 3.4 refuses it with exit 1 and
 * "Error: Failed to read blend file '<path>': Missing DNA block".
 */
export async function writeTruncatedBlend(srcBlend: string, outPath: string, keepBytes = TRUNCATED_BLEND_BYTES): Promise<void> {
  const file = await open(srcBlend, 'r');
  let head: Buffer;
  try {
    const buffer = Buffer.alloc(keepBytes);
    const { bytesRead } = await file.read(buffer, 0, keepBytes, 0);
    head = buffer.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
  // A compressed (gzip/zstd) or non-blend source would give a file that fails for another reason.
  if (head.subarray(0, 7).toString('latin1') !== 'BLENDER') {
    throw new Error(`${srcBlend} is not an uncompressed .blend (no "BLENDER" header), so truncating it proves nothing`);
  }
  if (head.length < keepBytes) throw new Error(`${srcBlend} is only ${head.length} bytes, not longer than ${keepBytes}`);
  await mkdir(dirname(outPath), { recursive: true });
  await writeFile(outPath, head);
}
