/**
 * The frames.zip archive builder (edge/zip-stream.ts) in plain Node, read back with yauzl, a
 * strict reader: past 65,535 entries the archive must carry ZIP64 end records, or the count is lost.
 */
import { describe, expect, it } from 'vitest';
import yauzl from 'yauzl';
import { zipStream, type ZipEntry } from '../../edge/zip-stream.ts';

const encoder = new TextEncoder();

/** `count` tiny entries named like frames, each a stream of its own text. */
async function* tinyFrames(count: number): AsyncGenerator<ZipEntry> {
  for (let frame = 1; frame <= count; frame++) {
    const bytes = encoder.encode(`frame ${frame}`);
    yield { name: `frame_${String(frame).padStart(6, '0')}.png`, lastModified: new Date(Date.UTC(2026, 0, 2, 3, 4, 6)), body: new Blob([bytes]).stream() };
  }
}

async function archive(count: number): Promise<Buffer> {
  return Buffer.from(await new Response(zipStream(tinyFrames(count))).arrayBuffer());
}

/** Every entry's name and text, read with yauzl. */
async function readAll(zip: Buffer): Promise<{ entryCount: number; files: Map<string, string>; methods: Set<number> }> {
  const zipfile = await yauzl.fromBufferPromise(zip, { lazyEntries: true });
  const files = new Map<string, string>();
  const methods = new Set<number>();
  for await (const entry of zipfile.eachEntry()) {
    methods.add(entry.compressionMethod);
    const stream = await zipfile.openReadStreamPromise(entry);
    let text = '';
    for await (const chunk of stream) text += String(chunk);
    files.set(entry.fileName, text);
  }
  return { entryCount: zipfile.entryCount, files, methods };
}

describe('frames.zip past the 16-bit limits', () => {
  it('an archive of 70,000 frames carries ZIP64 end records: a strict reader finds every entry and its bytes', async () => {
    const zip = await archive(70_000);
    // The ZIP64 end of central directory record and its locator are there.
    expect(zip.indexOf(Buffer.from([0x50, 0x4b, 0x06, 0x06]))).toBeGreaterThan(0);
    expect(zip.indexOf(Buffer.from([0x50, 0x4b, 0x06, 0x07]))).toBeGreaterThan(0);
    const { entryCount, files, methods } = await readAll(zip);
    expect(entryCount).toBe(70_000);
    expect(files.size).toBe(70_000);
    expect(methods).toEqual(new Set([0])); // stored, not recompressed
    for (const frame of [1, 65_535, 65_536, 70_000]) {
      expect(files.get(`frame_${String(frame).padStart(6, '0')}.png`)).toBe(`frame ${frame}`);
    }
  }, 120_000);

  it('a small archive stays a plain ZIP (no ZIP64 records), for readers that know no ZIP64', async () => {
    const zip = await archive(3);
    expect(zip.indexOf(Buffer.from([0x50, 0x4b, 0x06, 0x06]))).toBe(-1);
    const { entryCount, files } = await readAll(zip);
    expect(entryCount).toBe(3);
    expect([...files]).toEqual([
      ['frame_000001.png', 'frame 1'],
      ['frame_000002.png', 'frame 2'],
      ['frame_000003.png', 'frame 3'],
    ]);
  });
});
