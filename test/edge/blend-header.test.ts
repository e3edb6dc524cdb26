/**
 * A corpus of file heads for the .blend header check: every layout Blender writes is accepted
 * (12-byte headers in both pointer sizes and byte orders, Blender 5's 17-byte header, gzip and
 * zstd wrapping), and each way a header can be wrong is refused with a message that names it.
 */
import { HTTPException } from 'hono/http-exception';
import { zstdCompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { checkBlendHeader } from '../../edge/blend-header.ts';
import { expectRefusedUnchanged, pngBytes, sharedFarm, submitJob } from './helpers.ts';

// Parsing, and refusals that change nothing: one farm serves them all.
sharedFarm();

const encoder = new TextEncoder();

/** `header` followed by bytes that look like block data, `size` bytes in all. */
function file(header: string, size = 4096): Uint8Array {
  const bytes = new Uint8Array(Math.max(size, header.length));
  for (let i = header.length; i < bytes.length; i++) bytes[i] = (i * 31) & 0xff;
  bytes.set(encoder.encode(header));
  return bytes;
}

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream('gzip'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** As Blender 3.x writes zstd: independent frames of 1 MiB of the file each, one after another. */
function zstd(bytes: Uint8Array, frameBytes = 1024 * 1024): Uint8Array {
  const frames: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += frameBytes) frames.push(new Uint8Array(zstdCompressSync(bytes.subarray(at, at + frameBytes))));
  const out = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let at = 0;
  for (const frame of frames) {
    out.set(frame, at);
    at += frame.length;
  }
  return out;
}

/** Bytes no compressor can shrink (xorshift), so zstd stores them in raw 128 KiB blocks. */
function noise(size: number, seed = 12345): Uint8Array {
  const bytes = new Uint8Array(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

/** The encoding accepted, or the error message of the 400 refusal. */
async function verdict(bytes: Uint8Array): Promise<string> {
  // As the routes call it: the file's first 64 KiB.
  const head = bytes.subarray(0, 64 * 1024);
  try {
    return await checkBlendHeader(head, 'blend_file');
  } catch (error) {
    if (!(error instanceof HTTPException)) throw error;
    expect(error.status).toBe(400);
    return ((await error.getResponse().json()) as { error: string }).error;
  }
}

describe('checkBlendHeader accepts every header Blender writes', () => {
  it.each([
    ['64-bit little-endian (Blender 3.4 on x86-64)', 'BLENDER-v304'],
    ['32-bit little-endian', 'BLENDER_v279'],
    ['64-bit big-endian', 'BLENDER-V249'],
    ['32-bit big-endian (a PowerPC Mac)', 'BLENDER_V249'],
    ['the 17-byte header of Blender 5.0', 'BLENDER17-01v0500'],
    ['the 17-byte header, Blender 4.5 version digits', 'BLENDER17-01v0405'],
  ])('%s: %s', async (_what, header) => {
    expect(await verdict(file(header))).toBe('plain');
  });

  it('a .blend of exactly one 12-byte header and nothing else', async () => {
    expect(await verdict(encoder.encode('BLENDER-v304'))).toBe('plain');
  });

  it('gzip-wrapped (Blender before 3.0), in both header layouts', async () => {
    expect(await verdict(await gzip(file('BLENDER-v279')))).toBe('gzip');
    expect(await verdict(await gzip(file('BLENDER17-01v0500')))).toBe('gzip');
  });

  it('zstd-wrapped in frames as Blender 3.0 and later write it, the header read from inside', async () => {
    expect(await verdict(zstd(file('BLENDER-v304', 3 * 1024 * 1024)))).toBe('zstd');
    expect(await verdict(zstd(file('BLENDER17-01v0500', 300_000)))).toBe('zstd');
  });

  it('zstd whose first block is longer than the 64 KiB read: the frame header is all that is checked', async () => {
    // Incompressible contents go into raw blocks of 128 KiB, so the first block ends past the
    // head: what it holds (here a bad header) is left to the node's Blender.
    const contents = concat(encoder.encode('BLENDER%v304'), noise(300_000));
    expect(await verdict(rawZstd(contents))).toBe('zstd');
    // The same contents in small raw blocks are read, and refused.
    expect(await verdict(rawZstd(contents, 1000))).toMatch(/inside its zstd compression, unknown pointer size '%'/);
  });
});

describe('checkBlendHeader refuses, saying what is wrong', () => {
  it.each([
    ['only "BLENDER" (7 bytes)', encoder.encode('BLENDER'), 'blend_file is not a .blend: its header is cut off after 7 bytes'],
    ['a 12-byte header cut after 10 bytes', encoder.encode('BLENDER-v3'), 'blend_file is not a .blend: its header is cut off after 10 bytes'],
    ['"BLEN" (4 bytes)', encoder.encode('BLEN'), 'blend_file is not a .blend: its header is cut off after 4 bytes'],
    ['a 17-byte header cut after 14 bytes', encoder.encode('BLENDER17-01v0'), 'blend_file is not a .blend: its header is cut off after 14 bytes'],
    ['a wrong pointer size', file('BLENDER%v304'), "blend_file is not a .blend: unknown pointer size '%'"],
    ['a NUL for the pointer size', file('BLENDER\0v304'), "blend_file is not a .blend: unknown pointer size '\\x00'"],
    ['a wrong endianness', file('BLENDER-x304'), "blend_file is not a .blend: unknown endianness 'x'"],
    ['a version that is not digits', file('BLENDER-v3a4'), "blend_file is not a .blend: its version '3a4' is not three digits"],
    ['a header size other than 17', file('BLENDER18-01v0500'), "blend_file is not a .blend: its header size '18' is not one Blender writes ('17')"],
    ['a 17-byte header without its dash', file('BLENDER17_01v0500'), "blend_file is not a .blend: byte 10 of its header is '_', not '-'"],
    ['an unknown file format version', file('BLENDER17-02v0500'), "blend_file is not a .blend: its file format version '02' is not one Blender writes ('01')"],
    ['a big-endian 17-byte header', file('BLENDER17-01V0500'), "blend_file is not a .blend: unknown endianness 'V'"],
    ['a 17-byte header with a bad version', file('BLENDER17-01v05x0'), "blend_file is not a .blend: its version '05x0' is not four digits"],
    ['an empty file', new Uint8Array(0), 'blend_file is empty'],
    ['random bytes', noise(4096, 777), 'blend_file is not a .blend file (it does not start with "BLENDER", nor is it gzip or zstd compressed)'],
    ['a PNG', pngBytes('x'), 'blend_file is not a .blend file (it does not start with "BLENDER", nor is it gzip or zstd compressed)'],
  ])('%s', async (_what, bytes, message) => {
    const error = await verdict(bytes);
    expect(error.startsWith(message), `${error}\n  should start with\n${message}`).toBe(true);
  });

  it('the same faults inside gzip, said to be inside it', async () => {
    expect(await verdict(await gzip(encoder.encode('BLENDER')))).toBe(
      'blend_file is not a .blend: inside its gzip compression, its header is cut off after 7 bytes',
    );
    expect(await verdict(await gzip(file('BLENDER%v304')))).toMatch(/^blend_file is not a \.blend: inside its gzip compression, unknown pointer size '%'/);
    expect(await verdict(await gzip(file('BLENDER-v30x')))).toBe(
      "blend_file is not a .blend: inside its gzip compression, its version '30x' is not three digits",
    );
    expect(await verdict(await gzip(pngBytes('inside')))).toBe('blend_file is a gzip file that does not contain a .blend');
  });

  it('the same faults inside zstd, said to be inside it', async () => {
    expect(await verdict(zstd(encoder.encode('BLENDER')))).toBe('blend_file is not a .blend: inside its zstd compression, its header is cut off after 7 bytes');
    expect(await verdict(zstd(file('BLENDER%v304')))).toMatch(/^blend_file is not a \.blend: inside its zstd compression, unknown pointer size '%'/);
    expect(await verdict(zstd(file('BLENDER-V3O4')))).toBe("blend_file is not a .blend: inside its zstd compression, its version '3O4' is not three digits");
    expect(await verdict(zstd(pngBytes('inside')))).toBe('blend_file is a zstd file that does not contain a .blend');
  });

  it('a zstd magic with a broken frame: reserved bit, cut header, reserved block type, corrupt data', async () => {
    const good = zstd(file('BLENDER-v304', 50_000));
    const reserved = good.slice();
    reserved[4] = reserved[4]! | 0x08;
    expect(await verdict(reserved)).toBe('blend_file is not a .blend: its zstd frame header is malformed (the reserved bit is set)');

    expect(await verdict(good.slice(0, 6))).toBe('blend_file is not a .blend: its zstd frame header is cut off after 6 bytes');

    const frameHeader = frameHeaderBytes(good);
    const reservedBlock = good.slice();
    reservedBlock[frameHeader] = (reservedBlock[frameHeader]! & ~0x06) | 0x06; // block type 3
    expect(await verdict(reservedBlock)).toBe('blend_file is not a .blend: its zstd block 1 has the reserved block type');

    // The first block's compressed bytes overwritten: the decoder itself refuses them.
    const corrupt = good.slice();
    corrupt.fill(0xff, frameHeader + 3, frameHeader + 40);
    expect(await verdict(corrupt)).toMatch(/^blend_file is not a \.blend: its zstd data cannot be decompressed \(.+\)$/);
  });
});

describe('the routes answer the check as a 400 and store nothing', () => {
  it('POST /submit_job with a 7-byte "BLENDER"', async () => {
    await expectRefusedUnchanged(
      () => submitJob({ start_frame: 1, end_frame: 1 }, encoder.encode('BLENDER')),
      400,
      'blend_file is not a .blend: its header is cut off after 7 bytes',
    );
  });

  it('POST /submit_job with a wrong pointer size', async () => {
    await expectRefusedUnchanged(() => submitJob({ start_frame: 1, end_frame: 1 }, file('BLENDER%v304')), 400, "unknown pointer size '%'");
  });
});

/**
 * One zstd frame of raw (stored) blocks of `blockBytes`, written by hand: what zstd does with
 * incompressible data (workerd's zstdCompressSync cannot compress 300 KB of noise).
 */
function rawZstd(contents: Uint8Array, blockBytes = 128 * 1024): Uint8Array {
  // Single segment, 4-byte content size (as Blender's frames), no checksum, no dictionary.
  const parts: Uint8Array[] = [new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0xa0, ...[0, 8, 16, 24].map((shift) => (contents.length >>> shift) & 0xff)])];
  for (let at = 0; at < contents.length; at += blockBytes) {
    const block = contents.subarray(at, at + blockBytes);
    const last = at + blockBytes >= contents.length ? 1 : 0;
    const header = (block.length << 3) | last; // block type 0: raw
    parts.push(new Uint8Array([header & 0xff, (header >> 8) & 0xff, (header >> 16) & 0xff]), block);
  }
  return parts.reduce(concat);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Where the first block header starts in a zstd frame made by `zstdCompressSync`. */
function frameHeaderBytes(frame: Uint8Array): number {
  const descriptor = frame[4]!;
  const singleSegment = (descriptor >> 5) & 1;
  return 5 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][descriptor & 3]! + [singleSegment ? 1 : 0, 2, 4, 8][descriptor >> 6]!;
}
