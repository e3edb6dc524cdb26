/**
 * Project archives on the node: a good one unpacks into the cache and its main .blend is found;
 * malicious ones (`..` names, absolute paths, symbolic links, zip bombs) are refused with a clear
 * error and leave nothing behind, inside the cache or outside it.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';
import { BlendCache } from '../../worker-node/blend-cache.ts';
import type { MasterClient } from '../../worker-node/master-client.ts';
import { resolveMainBlend, unpackProject, UnsafeArchiveError, type UnpackLimits } from '../../worker-node/project-unpack.ts';
import { buildZip, type RawEntry } from './zip-builder.ts';

const LIMITS: UnpackLimits = { maxFiles: 100, maxBytes: 8 * 1024 * 1024 };
const BLEND = Buffer.concat([Buffer.from('BLENDER-v304'), Buffer.alloc(500, 7)]);

/** Every path under `dir`, relative, sorted: what a test compares to prove nothing was written. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const item of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, item.name);
      out.push(relative(dir, path) + (item.isDirectory() ? '/' : ''));
      if (item.isDirectory()) walk(path);
    }
  };
  walk(dir);
  return out.sort();
}

/** A sandbox: the archive beside a `cache/` folder, so writes outside the cache would show. */
function sandbox(entries: RawEntry[]): { root: string; zip: string; dest: string } {
  const root = tempDir('unpack');
  const zip = join(root, 'project.zip');
  writeFileSync(zip, buildZip(entries));
  return { root, zip, dest: join(root, 'cache', 'projects', 'abc.tmp') };
}

async function refused(entries: RawEntry[], phrase: string | RegExp, limits = LIMITS): Promise<void> {
  const box = sandbox(entries);
  const before = tree(box.root);
  const error = await unpackProject(box.zip, box.dest, limits).then(
    () => null,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(UnsafeArchiveError);
  expect((error as Error).message).toMatch(phrase);
  // Nothing new anywhere: not the project folder, not a stray file beside the archive.
  const after = tree(box.root).filter((p) => p !== 'cache/' && p !== 'cache/projects/');
  expect(after).toEqual(before);
}

describe('unpacking a project archive', () => {
  it('unpacks folders, textures and libraries at their relative paths and finds the main .blend', async () => {
    const texture = Buffer.alloc(3000, 42);
    const box = sandbox([
      { name: 'shots/', data: undefined },
      { name: 'shots/main.blend', data: BLEND, deflate: true },
      { name: 'shots/tex/color.png', data: texture },
      { name: 'assets/lib.blend', data: BLEND },
      { name: 'shots/tex/udim.1001.png', data: texture },
      { name: 'notes/ümlaut café.txt', data: Buffer.from('utf-8 names survive') },
    ]);
    expect(await unpackProject(box.zip, box.dest, LIMITS)).toEqual({ files: 5, bytes: BLEND.length * 2 + texture.length * 2 + 19 });
    expect(tree(box.dest)).toEqual([
      'assets/',
      'assets/lib.blend',
      'notes/',
      'notes/ümlaut café.txt',
      'shots/',
      'shots/main.blend',
      'shots/tex/',
      'shots/tex/color.png',
      'shots/tex/udim.1001.png',
    ]);
    expect(readFileSync(join(box.dest, 'shots/main.blend'))).toEqual(BLEND);
    expect(await resolveMainBlend(box.dest, 'shots/main.blend')).toBe(join(box.dest, 'shots/main.blend'));
    await expect(resolveMainBlend(box.dest, 'shots/missing.blend')).rejects.toThrow('main_blend "shots/missing.blend" is not a file in the project archive');
    await expect(resolveMainBlend(box.dest, null)).rejects.toThrow('no .blend file at its top level');
    await expect(resolveMainBlend(box.dest, '../project.zip')).rejects.toThrow('goes up with ".."');
  });

  it('finds the only top-level .blend, or the only one in a zipped folder, and refuses to guess between several', async () => {
    const one = sandbox([
      { name: 'scene.blend', data: BLEND },
      { name: 'tex/a.png', data: BLEND },
    ]);
    await unpackProject(one.zip, one.dest, LIMITS);
    expect(await resolveMainBlend(one.dest, null)).toBe(join(one.dest, 'scene.blend'));

    const folder = sandbox([
      { name: 'my project/shot.blend', data: BLEND },
      { name: 'my project/tex/a.png', data: BLEND },
    ]);
    await unpackProject(folder.zip, folder.dest, LIMITS);
    expect(await resolveMainBlend(folder.dest, null)).toBe(join(folder.dest, 'my project', 'shot.blend'));

    const two = sandbox([
      { name: 'a.blend', data: BLEND },
      { name: 'b.blend', data: BLEND },
    ]);
    await unpackProject(two.zip, two.dest, LIMITS);
    await expect(resolveMainBlend(two.dest, null)).rejects.toThrow(
      '2 .blend files at its top level (a.blend, b.blend): name the one to render with main_blend',
    );
  });

  it('refuses an entry that climbs out with ../', () =>
    refused(
      [
        { name: 'ok.blend', data: BLEND },
        { name: '../evil.txt', data: Buffer.from('pwned') },
      ],
      /invalid relative path: \.\.\/evil\.txt|goes up/,
    ));

  it('refuses ../ hidden in the middle of a path', () => refused([{ name: 'tex/../../evil.txt', data: Buffer.from('pwned') }], /\.\./));

  it('refuses backslash tricks (..\\evil is ../evil on Windows)', () => refused([{ name: '..\\evil.txt', data: Buffer.from('pwned') }], /\.\./));

  it('refuses absolute paths', () => refused([{ name: '/tmp/farm-evil.txt', data: Buffer.from('pwned') }], /absolute/));

  it('refuses Windows drive paths', () => refused([{ name: 'C:/evil.txt', data: Buffer.from('pwned') }], /absolute/));

  it('refuses symbolic links, even ones pointing inside', async () => {
    await refused(
      [
        { name: 'ok.blend', data: BLEND },
        { name: 'tex', data: Buffer.from('/etc'), unixMode: 0o120777 },
      ],
      'entry "tex" is a symbolic link',
    );
    await refused([{ name: 'link.png', data: Buffer.from('ok.blend'), unixMode: 0o120777 }], 'symbolic link');
  });

  it('refuses a link followed by a file written through it (the classic two-step escape)', () =>
    refused(
      [
        { name: 'out', data: Buffer.from('..'), unixMode: 0o120755 },
        { name: 'out/evil.txt', data: Buffer.from('pwned') },
      ],
      'symbolic link',
    ));

  it('refuses device files and FIFOs', () => refused([{ name: 'fifo', unixMode: 0o010644 }], 'special file'));

  it('refuses an archive with more entries than the cap, before writing anything', () =>
    refused(
      Array.from({ length: 101 }, (_, i) => ({ name: `f${i}.txt`, data: Buffer.from('x') })),
      '101 entries, over the limit of 100',
    ));

  it('refuses a zip bomb that declares its size: 64 MiB of zeros in 64 KiB, over the 8 MiB cap', async () => {
    const zeros = Buffer.alloc(64 * 1024 * 1024);
    const compressed = deflateRawSync(zeros, { level: 9 });
    expect(compressed.length).toBeLessThan(100 * 1024);
    await refused([{ name: 'bomb.bin', data: zeros, compressed }], 'more than 8388608 bytes (the limit), by the sizes it declares');
  });

  it('refuses a zip bomb that lies about its size, stopping once it inflates past what it declared', async () => {
    const zeros = Buffer.alloc(64 * 1024 * 1024);
    const compressed = deflateRawSync(zeros, { level: 9 });
    const box = sandbox([
      { name: 'a.blend', data: BLEND },
      { name: 'bomb.bin', data: zeros, compressed, declaredSize: 1000 },
    ]);
    await expect(unpackProject(box.zip, box.dest, { ...LIMITS, maxBytes: 1024 ** 3 })).rejects.toThrow(
      'entry "bomb.bin" inflates to more than the 1000 bytes it declares',
    );
    expect(tree(box.root)).toEqual(['cache/', 'cache/projects/', 'project.zip']);
  });

  it('refuses many honest files that add up past the cap', () =>
    refused(
      Array.from({ length: 9 }, (_, i) => ({ name: `big${i}.bin`, data: Buffer.alloc(1024 * 1024, i) })),
      'more than 8388608 bytes',
    ));

  it('refuses duplicate entries and a file standing where a folder must be', async () => {
    await refused(
      [
        { name: 'a.blend', data: BLEND },
        { name: 'a.blend', data: BLEND },
      ],
      'appears twice',
    );
    await refused(
      [
        { name: 'tex', data: BLEND },
        { name: 'tex/a.png', data: BLEND },
      ],
      'inside "tex", which is a file',
    );
  });

  it('refuses a file that is not a ZIP', async () => {
    const root = tempDir('unpack');
    writeFileSync(join(root, 'x.zip'), BLEND);
    await expect(unpackProject(join(root, 'x.zip'), join(root, 'out'), LIMITS)).rejects.toThrow('not a readable ZIP archive');
    expect(tree(root)).toEqual(['x.zip']);
  });
});

describe('the blend cache with a project archive', () => {
  /** A master client whose downloads copy `zipPath` and count themselves. */
  function fakeClient(zipPath: string) {
    const downloads: string[] = [];
    const client = {
      async downloadBlend(name: string, dest: string): Promise<string> {
        downloads.push(name);
        await copyFile(zipPath, dest);
        return createHash('sha256').update(readFileSync(zipPath)).digest('hex');
      },
    } as unknown as MasterClient;
    return { client, downloads };
  }

  it('downloads and verifies the zip once, unpacks it by hash, and returns the main .blend', async () => {
    const box = sandbox([
      { name: 'shots/main.blend', data: BLEND },
      { name: 'shots/tex/color.png', data: Buffer.alloc(100, 1) },
    ]);
    const sha = createHash('sha256').update(readFileSync(box.zip)).digest('hex');
    const work = join(box.root, 'node');
    const { client, downloads } = fakeClient(box.zip);
    const cache = new BlendCache(work, client, LIMITS);
    const [a, b] = await Promise.all([
      cache.ensure(`${sha}.zip`, sha, { main_blend: 'shots/main.blend' }),
      cache.ensure(`${sha}.zip`, sha, { main_blend: 'shots/main.blend' }),
    ]);
    expect(a).toBe(join(work, 'projects', sha, 'shots', 'main.blend'));
    expect(b).toBe(a);
    expect(await cache.ensure(`${sha}.zip`, sha, { main_blend: 'shots/main.blend' })).toBe(a);
    expect(downloads).toEqual([`${sha}.zip`]);
    expect(statSync(join(work, 'projects', sha, 'shots', 'tex', 'color.png')).size).toBe(100);
    // Only the unpacked folder stays: no archive, no temporary folders.
    expect(tree(work)).toEqual([
      'blend_files/',
      'projects/',
      `projects/${sha}/`,
      `projects/${sha}/shots/`,
      `projects/${sha}/shots/main.blend`,
      `projects/${sha}/shots/tex/`,
      `projects/${sha}/shots/tex/color.png`,
    ]);
  });

  it('fails a malicious archive with a clear error and keeps nothing of it', async () => {
    const box = sandbox([
      { name: 'main.blend', data: BLEND },
      { name: '../../escape.txt', data: Buffer.from('pwned') },
    ]);
    const sha = createHash('sha256').update(readFileSync(box.zip)).digest('hex');
    const work = join(box.root, 'node');
    const cache = new BlendCache(work, fakeClient(box.zip).client, LIMITS);
    await expect(cache.ensure(`${sha}.zip`, sha, {})).rejects.toThrow(
      `unpacking project ${sha.slice(0, 12)}: the archive has an unsafe or damaged entry: invalid relative path: ../../escape.txt`,
    );
    expect(tree(work)).toEqual(['blend_files/']);
    expect(tree(box.root)).toEqual(['node/', 'node/blend_files/', 'project.zip']);
  });

  it('refuses names from the master that are not <sha256>.blend, <sha256>.zip or <sha256>.manifest', async () => {
    const cache = new BlendCache(tempDir('cache'), fakeClient('/dev/null').client, LIMITS);
    const sha = 'a'.repeat(64);
    await expect(cache.ensure(`${sha}.tar`, sha)).rejects.toThrow('not <sha256>.blend, <sha256>.zip or <sha256>.manifest');
    await expect(cache.ensure(`${'b'.repeat(64)}.zip`, sha)).rejects.toThrow('refusing blend file name');
    await expect(cache.ensure(`../${sha}.zip`, sha)).rejects.toThrow('refusing blend file name');
  });
});
