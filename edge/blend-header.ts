/**
 * Recognises .blend files by their first bytes, so that an upload that is not a Blender file is
 * refused at submission rather than discovered by a node later.
 *
 * Blender writes `BLENDER` followed by pointer size, endianness and version, and may compress the
 * whole file with gzip (before 3.0) or zstd (3.0 and later).
 */
import { fail } from './errors.ts';

const BLENDER_MAGIC = [0x42, 0x4c, 0x45, 0x4e, 0x44, 0x45, 0x52]; // "BLENDER"
const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

export type BlendEncoding = 'plain' | 'gzip' | 'zstd';

function startsWith(bytes: Uint8Array, magic: number[]): boolean {
  return magic.every((b, i) => bytes[i] === b);
}

async function gunzipHead(bytes: Uint8Array, length: number): Promise<Uint8Array> {
  const stream = new Blob([bytes.slice(0, 64 * 1024)]).stream().pipeThrough(new DecompressionStream('gzip'));
  const reader = stream.getReader();
  const out = new Uint8Array(length);
  let filled = 0;
  try {
    while (filled < length) {
      const { value, done } = await reader.read();
      if (done || !value) break;
      const take = Math.min(value.length, length - filled);
      out.set(value.subarray(0, take), filled);
      filled += take;
    }
  } catch {
    // A truncated head of a valid gzip file errors after the bytes we need; keep what we got.
  } finally {
    reader.cancel().catch(() => {});
  }
  return out.subarray(0, filled);
}

/** Checks the first bytes of an upload named `field`; answers 400 when it is not a .blend. */
export async function checkBlendHeader(head: Uint8Array, field: string): Promise<BlendEncoding> {
  if (head.length === 0) fail(400, `${field} is empty`);
  if (startsWith(head, BLENDER_MAGIC)) return 'plain';
  if (startsWith(head, ZSTD_MAGIC)) return 'zstd';
  if (startsWith(head, GZIP_MAGIC)) {
    const inner = await gunzipHead(head, BLENDER_MAGIC.length);
    if (startsWith(inner, BLENDER_MAGIC)) return 'gzip';
    fail(400, `${field} is a gzip file that does not contain a .blend`);
  }
  fail(400, `${field} is not a .blend file (it does not start with "BLENDER", nor is it gzip or zstd compressed)`);
}
