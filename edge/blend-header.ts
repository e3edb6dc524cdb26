/**
 * Recognises .blend files by their first bytes, so that an upload that is not a Blender file is
 * refused at submission rather than discovered by a node later.
 *
 * The header is checked whole, as Blender's own reader (`blo_core_blend_header.cc`) decodes it:
 *  - 12 bytes, every Blender up to 4.x and 5.x on request: `BLENDER`, the pointer size (`_` 4
 *    bytes, `-` 8 bytes), the byte order (`v` little, `V` big endian), three version digits
 *    (`BLENDER-v304` is Blender 3.4, 64-bit, little-endian);
 *  - 17 bytes, written by Blender 5.0 and later: `BLENDER`, the header size as two digits (`17`),
 *    `-`, the file format version as two digits (`01`), `v`, four version digits
 *    (`BLENDER17-01v0500`). Such files always have 8-byte pointers and are little-endian.
 *
 * Blender may compress the whole file with gzip (before 3.0) or zstd (3.0 and later); the header
 * inside must pass the same check. Blender writes zstd as a series of frames; only the first
 * blocks of the first frame are decompressed here (workerd's node:zlib, as DecompressionStream
 * has no zstd), which is all the header needs. When the first block does not fit in the bytes
 * the caller passed, only the frame header is checked, and the node's Blender reads the rest.
 */
import { createZstdDecompress } from 'node:zlib';
import { fail } from './errors.ts';

const BLENDER_MAGIC = 'BLENDER';
const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
/** The longest header Blender writes (format version 1). */
const MAX_HEADER_BYTES = 17;
/** A zstd block never decompresses to more than this (the format's Block_Maximum_Size). */
const ZSTD_MAX_BLOCK_BYTES = 128 * 1024;
/**
 * Blocks decompressed to find the header: the first almost always holds it, and the cap bounds
 * what a hostile file can make the Worker inflate (4 × 128 KiB).
 */
const ZSTD_BLOCKS_READ = 4;

export type BlendEncoding = 'plain' | 'gzip' | 'zstd';

/** What is wrong with a header: `cut` when the bytes end before the header does. */
type HeaderProblem = { kind: 'not-blend' } | { kind: 'cut' | 'bad'; text: string };

function startsWith(bytes: Uint8Array, magic: number[]): boolean {
  return magic.every((b, i) => bytes[i] === b);
}

/** One header byte as it reads in a message: printable ASCII as is, anything else as `\xNN`. */
function show(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * Checks the .blend header at the start of `bytes` (which are all there is of the file, or at
 * least its first 17 bytes); null when it is one Blender writes.
 */
function headerProblem(bytes: Uint8Array): HeaderProblem | null {
  const text = String.fromCharCode(...bytes.subarray(0, MAX_HEADER_BYTES));
  const cut = (): HeaderProblem => ({ kind: 'cut', text: `its header is cut off after ${bytes.length} byte${bytes.length === 1 ? '' : 's'}` });
  if (!text.startsWith(BLENDER_MAGIC.slice(0, Math.min(text.length, BLENDER_MAGIC.length))) || text.length === 0) return { kind: 'not-blend' };
  if (text.length < 8) return cut();
  const first = text[7]!;
  if (first === '_' || first === '-') {
    // The 12-byte header: pointer size, byte order, three version digits.
    if (text.length < 9) return cut();
    if (text[8] !== 'v' && text[8] !== 'V') {
      return { kind: 'bad', text: `unknown endianness '${show(text[8]!)}' (Blender writes 'v' for little-endian or 'V' for big-endian)` };
    }
    if (text.length < 12) return cut();
    const version = text.slice(9, 12);
    if (!/^\d{3}$/.test(version)) return { kind: 'bad', text: `its version '${show(version)}' is not three digits` };
    return null;
  }
  if (!/\d/.test(first)) {
    return {
      kind: 'bad',
      text: `unknown pointer size '${show(first)}' (Blender writes '_' for 4 bytes or '-' for 8 bytes, or the header size in digits since 5.0)`,
    };
  }
  // The 17-byte header of Blender 5.0 and later.
  if (text.length < 9) return cut();
  const size = text.slice(7, 9);
  if (size !== '17') return { kind: 'bad', text: `its header size '${show(size)}' is not one Blender writes ('17')` };
  if (text.length < 17) return cut();
  if (text[9] !== '-') return { kind: 'bad', text: `byte 10 of its header is '${show(text[9]!)}', not '-'` };
  const format = text.slice(10, 12);
  if (format !== '01') return { kind: 'bad', text: `its file format version '${show(format)}' is not one Blender writes ('01')` };
  if (text[12] !== 'v') return { kind: 'bad', text: `unknown endianness '${show(text[12]!)}' (Blender 5 headers are always 'v', little-endian)` };
  const version = text.slice(13, 17);
  if (!/^\d{4}$/.test(version)) return { kind: 'bad', text: `its version '${show(version)}' is not four digits` };
  return null;
}

/** Up to the first `length` bytes inside a gzip stream: fewer when it ends or breaks first. */
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
    // A head cut from a longer file, or a corrupt one, errors after what it could give: the
    // header check below says what is missing.
  } finally {
    reader.cancel().catch(() => {});
  }
  return out.subarray(0, filled);
}

/** How far the first blocks of a zstd frame reach in `bytes`, or why the frame is not one. */
type ZstdLayout = { problem: string } | { headerEnd: number; blocksEnd: number; blocks: number; frameEnds: boolean };

/** Reads a zstd frame header and the headers of its first blocks (RFC 8878, section 3.1.1). */
function zstdLayout(bytes: Uint8Array): ZstdLayout {
  const cut = { problem: `its zstd frame header is cut off after ${bytes.length} bytes` };
  if (bytes.length < 5) return cut;
  const descriptor = bytes[4]!;
  if (descriptor & 0x08) return { problem: 'its zstd frame header is malformed (the reserved bit is set)' };
  const singleSegment = (descriptor >> 5) & 1;
  const contentSizeBytes = [singleSegment ? 1 : 0, 2, 4, 8][descriptor >> 6]!;
  const dictionaryBytes = [0, 1, 2, 4][descriptor & 3]!;
  const checksumBytes = descriptor & 0x04 ? 4 : 0;
  const headerEnd = 5 + (singleSegment ? 0 : 1) + dictionaryBytes + contentSizeBytes;
  if (bytes.length < headerEnd) return cut;
  let offset = headerEnd;
  let blocks = 0;
  let last = false;
  while (blocks < ZSTD_BLOCKS_READ && !last && offset + 3 <= bytes.length) {
    const header = bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16);
    const type = (header >> 1) & 3;
    const size = header >>> 3;
    if (type === 3) return { problem: `its zstd block ${blocks + 1} has the reserved block type` };
    if (size > ZSTD_MAX_BLOCK_BYTES) return { problem: `its zstd block ${blocks + 1} claims ${size} bytes, over zstd's 128 KiB` };
    const end = offset + 3 + (type === 1 ? 1 : size); // an RLE block stores its one byte
    if (end > bytes.length) break;
    offset = end;
    blocks++;
    last = (header & 1) === 1;
  }
  // The frame (so the decompressed file, when it is the only frame) ends with these bytes.
  const frameEnds = last && offset + checksumBytes >= bytes.length;
  return { headerEnd, blocksEnd: offset, blocks, frameEnds };
}

/** Decompresses `input` (whole zstd blocks, not a whole frame): what came out, or the error. */
function unzstd(input: Uint8Array): Promise<{ out: Uint8Array } | { error: string }> {
  return new Promise((resolve) => {
    const decoder = createZstdDecompress();
    const chunks: Uint8Array[] = [];
    let settled = false;
    const finish = (error?: Error | null) => {
      if (settled) return;
      settled = true;
      decoder.destroy();
      if (error) return resolve({ error: error.message });
      const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const chunk of chunks) {
        out.set(chunk, at);
        at += chunk.length;
      }
      resolve({ out });
    };
    decoder.on('data', (chunk: Uint8Array) => chunks.push(chunk));
    decoder.on('error', finish);
    // Not ended: the frame goes on past these blocks, and ending would report it as truncated.
    decoder.write(input, (error) => (error ? finish(error) : decoder.flush(() => finish())));
  });
}

/**
 * Checks the first bytes of an upload named `field`; answers 400 `{ "error" }` saying what is
 * wrong when it is not a .blend Blender wrote. `head` is the file's first 64 KiB, or all of it
 * when it is shorter: a plain or gzip header shorter than 12 bytes is taken as the file's end.
 */
export async function checkBlendHeader(head: Uint8Array, field: string): Promise<BlendEncoding> {
  if (head.length === 0) fail(400, `${field} is empty`);
  const refuse = (problem: HeaderProblem & { text: string }, inside = ''): never => fail(400, `${field} is not a .blend: ${inside}${problem.text}`);

  if (startsWith(head, GZIP_MAGIC)) {
    const problem = headerProblem(await gunzipHead(head, MAX_HEADER_BYTES));
    if (problem === null) return 'gzip';
    if (problem.kind === 'not-blend') fail(400, `${field} is a gzip file that does not contain a .blend`);
    refuse(problem, 'inside its gzip compression, ');
  }

  if (startsWith(head, ZSTD_MAGIC)) {
    const layout = zstdLayout(head);
    if ('problem' in layout) fail(400, `${field} is not a .blend: ${layout.problem}`);
    // The first block does not fit in the head: the frame header is all that can be checked.
    if (layout.blocks === 0) return 'zstd';
    const decoded = await unzstd(head.subarray(0, layout.blocksEnd));
    if ('error' in decoded) fail(400, `${field} is not a .blend: its zstd data cannot be decompressed (${decoded.error})`);
    const problem = headerProblem(decoded.out);
    if (problem === null) return 'zstd';
    if (problem.kind === 'not-blend') fail(400, `${field} is a zstd file that does not contain a .blend`);
    // Short only because the blocks read were: the node's Blender checks what follows.
    if (problem.kind === 'cut' && !layout.frameEnds) return 'zstd';
    refuse(problem, 'inside its zstd compression, ');
  }

  const problem = headerProblem(head);
  if (problem === null) return 'plain';
  if (problem.kind === 'not-blend') {
    fail(400, `${field} is not a .blend file (it does not start with "BLENDER", nor is it gzip or zstd compressed)`);
  }
  return refuse(problem);
}
