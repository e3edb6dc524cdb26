/**
 * The node's side of projects stored file by file: the file cache (hash checked on download and
 * again when a cached file changed, LRU under a size limit), project folders laid out so nothing
 * written in them reaches the cache, manifests checked like archive entries, and BlendCache
 * downloading only the files it lacks. A fake master client serves the bytes; a local HTTP server
 * that cuts a download short checks that the real client resumes it with a Range request.
 */
import { createHash } from 'node:crypto';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';
import { canonicalManifest, manifestSha256, type Manifest } from '../../protocol/manifest.ts';
import { BlendCache } from '../../worker-node/blend-cache.ts';
import { MasterClient } from '../../worker-node/master-client.ts';
import { FileCache, layoutProject, parseCacheSize, parseManifest } from '../../worker-node/project-files.ts';
import { UnsafeArchiveError } from '../../worker-node/project-unpack.ts';

const LIMITS = { maxFiles: 100, maxBytes: 10_000_000 };
const sha = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');
const work = () => tempDir('files');

/** A fetch that serves `store` by hash and counts what it sent; `tamper` corrupts what it sends. */
function server(store: Map<string, Buffer>, tamper = false) {
  const sent: string[] = [];
  const fetch = async (hash: string, dest: string) => {
    const bytes = store.get(hash);
    if (!bytes) throw new Error(`no file ${hash}`);
    sent.push(hash);
    const out = tamper ? Buffer.concat([bytes, Buffer.from('!')]) : bytes;
    await writeFile(dest, out);
    return sha(out);
  };
  return { fetch, sent };
}

function project(files: Record<string, string>, main = 'scene.blend'): { manifest: Manifest; store: Map<string, Buffer> } {
  const store = new Map<string, Buffer>();
  const list = Object.entries(files).map(([path, content]) => {
    const bytes = Buffer.from(content);
    store.set(sha(bytes), bytes);
    return { path, sha256: sha(bytes), size: bytes.length };
  });
  return { manifest: { version: 1, main_blend: main, files: list }, store };
}

describe('the file cache', () => {
  it('downloads a file once, verifies its hash, and refuses a corrupted download', async () => {
    const cache = new FileCache(work());
    const bytes = Buffer.from('texture');
    const { fetch, sent } = server(new Map([[sha(bytes), bytes]]));
    const first = await cache.get(sha(bytes), bytes.length, fetch);
    expect(first.downloaded).toBe(true);
    expect(readFileSync(first.path, 'utf8')).toBe('texture');
    // Cached files are read-only.
    expect(statSync(first.path).mode & 0o222).toBe(0);
    expect((await cache.get(sha(bytes), bytes.length, fetch)).downloaded).toBe(false);
    expect(sent).toHaveLength(1);

    const bad = new FileCache(work());
    await expect(bad.get(sha(bytes), bytes.length, server(new Map([[sha(bytes), bytes]]), true).fetch)).rejects.toThrow('the download was corrupted');
    expect(await bad.bytes()).toBe(0);
  });

  it('a cached file changed on disk is detected and fetched again', async () => {
    const dir = work();
    const bytes = Buffer.from('original bytes');
    const { fetch, sent } = server(new Map([[sha(bytes), bytes]]));
    const cache = new FileCache(dir);
    const { path } = await cache.get(sha(bytes), bytes.length, fetch);
    chmodSync(path, 0o644);
    writeFileSync(path, 'corrupt bytes!');
    const again = await cache.get(sha(bytes), bytes.length, fetch);
    expect(again.downloaded).toBe(true);
    expect(readFileSync(again.path, 'utf8')).toBe('original bytes');
    expect(sent).toHaveLength(2);

    // A node that restarts hashes what it finds once, and catches a file changed while it was down.
    chmodSync(path, 0o644);
    writeFileSync(path, 'corrupt again!');
    const restarted = new FileCache(dir);
    expect((await restarted.get(sha(bytes), bytes.length, fetch)).downloaded).toBe(true);
    expect(readFileSync(path, 'utf8')).toBe('original bytes');
  });

  it('keeps within its size limit, least recently used out first, never a pinned file', async () => {
    const files = ['a', 'b', 'c', 'd'].map((c) => Buffer.alloc(100, c));
    const { fetch } = server(new Map(files.map((f) => [sha(f), f])));
    const cache = new FileCache(work(), 250);
    const [a, b, c, d] = files.map((f) => sha(f)) as [string, string, string, string];
    await cache.get(a, 100, fetch);
    await cache.get(b, 100, fetch);
    await cache.get(a, 100, fetch); // a is now used more recently than b
    await cache.get(c, 100, fetch);
    expect(await cache.bytes()).toBe(200);
    // b was the one evicted.
    expect(() => statSync(join(cache.dir, b))).toThrow();
    expect((await cache.get(a, 100, fetch)).downloaded).toBe(false);
    const unpin = cache.pin([c]);
    await cache.get(d, 100, fetch); // c is the oldest, but pinned: a goes
    unpin();
    expect((await cache.get(c, 100, fetch)).downloaded).toBe(false);
    expect((await cache.get(a, 100, fetch)).downloaded).toBe(true);
  });
});

describe('laying out a project', () => {
  it('links read-only files where links protect the cache, copies folders Blender writes into', async () => {
    const { manifest, store } = project({ 'scene.blend': 'BLENDER-v', 'tex/wood.png': 'wood', 'blendcache_scene/a.bphys': 'cache' });
    const cache = new FileCache(work());
    const dest = join(work(), 'project');
    const { fetch } = server(store);
    const { downloadedBytes } = await layoutProject(cache, manifest, dest, fetch, { links: true });
    expect(downloadedBytes).toBe(9 + 4 + 5);
    const cached = (content: string) => join(cache.dir, sha(content));
    expect(statSync(join(dest, 'tex/wood.png')).ino).toBe(statSync(cached('wood')).ino);
    // A simulation cache is written by Blender: a private, writable copy.
    expect(statSync(join(dest, 'blendcache_scene/a.bphys')).ino).not.toBe(statSync(cached('cache')).ino);
    writeFileSync(join(dest, 'blendcache_scene/a.bphys'), 'new frames');
    expect(readFileSync(cached('cache'), 'utf8')).toBe('cache');
  });

  it('with copies, nothing written in the project reaches the cache', async () => {
    const { manifest, store } = project({ 'scene.blend': 'BLENDER-v', 'tex/wood.png': 'wood' });
    const cache = new FileCache(work());
    const dest = join(work(), 'project');
    await layoutProject(cache, manifest, dest, server(store).fetch, { links: false });
    writeFileSync(join(dest, 'tex/wood.png'), 'overwritten');
    expect(readFileSync(join(cache.dir, sha('wood')), 'utf8')).toBe('wood');
  });

  it('checks manifests as archive entries are checked', () => {
    const file = (path: string) => ({ path, sha256: 'a'.repeat(64), size: 1 });
    const parse =
      (files: unknown[], main = 'scene.blend') =>
      () =>
        parseManifest(JSON.stringify({ version: 1, main_blend: main, files }), LIMITS);
    expect(parse([file('scene.blend'), file('../x')])).toThrow(/goes up with/);
    expect(parse([file('scene.blend'), file('/etc/x')])).toThrow(/is absolute/);
    expect(parse([file('scene.blend'), file('x'), file('x')])).toThrow(/appears twice/);
    expect(parse([file('scene.blend'), file('t'), file('t/a')])).toThrow(/inside "t", which is a file/);
    expect(parse(Array.from({ length: 101 }, (_, i) => file(i === 0 ? 'scene.blend' : `f${i}`)))).toThrow(/over the limit of 100/);
    expect(() => parseManifest('not json', LIMITS)).toThrow(UnsafeArchiveError);
  });

  it('parses --cache-size', () => {
    expect(parseCacheSize('50G')).toBe(50 * 1024 ** 3);
    expect(parseCacheSize('512M')).toBe(512 * 1024 ** 2);
    expect(parseCacheSize('1000')).toBe(1000);
    expect(parseCacheSize('lots')).toBeNull();
    expect(parseCacheSize('0')).toBeNull();
  });
});

describe('the blend cache with a manifest', () => {
  it('lays out the project, and a second manifest downloads only the file that changed', async () => {
    const v1 = project({ 'scene.blend': 'BLENDER-v1', 'tex/wood.png': 'wood texture' });
    const v2 = project({ 'scene.blend': 'BLENDER-v2', 'tex/wood.png': 'wood texture' });
    const texts = new Map<string, string>();
    for (const p of [v1, v2]) {
      const text = canonicalManifest(p.manifest);
      texts.set(await manifestSha256(text), text);
    }
    const store = new Map([...v1.store, ...v2.store]);
    const files = server(store);
    const client = {
      async downloadBlend(name: string, dest: string) {
        const text = texts.get(name.slice(0, 64))!;
        await writeFile(dest, text);
        return sha(text);
      },
      downloadManifestFile: (_m: string, file: string, dest: string) => files.fetch(file, dest),
    } as unknown as MasterClient;
    const cache = new BlendCache(work(), client, LIMITS);
    const [sha1, sha2] = [...texts.keys()] as [string, string];

    const blend1 = await cache.ensure(`${sha1}.manifest`, sha1);
    expect(blend1).toBe(join(cache.projectsDir, `${sha1}.manifest`, 'scene.blend'));
    expect(readFileSync(blend1, 'utf8')).toBe('BLENDER-v1');
    expect(readFileSync(join(cache.projectsDir, `${sha1}.manifest`, 'tex/wood.png'), 'utf8')).toBe('wood texture');
    expect(files.sent).toHaveLength(2);

    const blend2 = await cache.ensure(`${sha2}.manifest`, sha2);
    expect(readFileSync(blend2, 'utf8')).toBe('BLENDER-v2');
    expect(files.sent).toEqual([...files.sent.slice(0, 2), sha('BLENDER-v2')]);
    // The same manifest again: nothing is fetched.
    await cache.ensure(`${sha2}.manifest`, sha2);
    expect(files.sent).toHaveLength(3);
  });

  it('refuses a manifest whose bytes do not hash to its name', async () => {
    const client = {
      async downloadBlend(_name: string, dest: string) {
        await writeFile(dest, 'something else');
        return sha('something else');
      },
    } as unknown as MasterClient;
    const cache = new BlendCache(work(), client, LIMITS);
    const name = 'c'.repeat(64);
    await expect(cache.ensure(`${name}.manifest`, name)).rejects.toThrow('the download was corrupted');
  });
});

describe('a file download cut short', () => {
  it("resumes from the bytes on disk with a Range request and checks the whole file's hash", async () => {
    const bytes = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) % 251;
    const fileSha = sha(bytes);
    const manifest = 'd'.repeat(64);
    const half = bytes.length / 2;
    const requests: { url: string | undefined; range: string | undefined }[] = [];
    const http = createServer((req, res) => {
      requests.push({ url: req.url, range: req.headers.range });
      if (requests.length === 1) {
        // The first try: half the file, then the connection drops.
        res.writeHead(200, { 'content-length': String(bytes.length), 'accept-ranges': 'bytes' });
        res.write(bytes.subarray(0, half), () => setTimeout(() => res.socket?.destroy(), 200));
        return;
      }
      const match = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      if (!match) {
        res.writeHead(200, { 'content-length': String(bytes.length) });
        res.end(bytes);
        return;
      }
      const start = Number(match[1]);
      res.writeHead(206, { 'content-length': String(bytes.length - start), 'content-range': `bytes ${start}-${bytes.length - 1}/${bytes.length}` });
      res.end(bytes.subarray(start));
    });
    await new Promise<void>((done) => http.listen(0, '127.0.0.1', done));
    const client = new MasterClient({ baseUrl: `http://127.0.0.1:${(http.address() as AddressInfo).port}` });
    try {
      const cache = new FileCache(work());
      const got = await cache.get(fileSha, bytes.length, (file, dest) => client.downloadManifestFile(manifest, file, dest));
      expect(got.downloaded).toBe(true);
      expect(sha(readFileSync(got.path))).toBe(fileSha);
      expect(requests).toHaveLength(2);
      expect(requests.map((r) => r.url)).toEqual([`/manifests/${manifest}/files/${fileSha}`, `/manifests/${manifest}/files/${fileSha}`]);
      expect(requests[0]!.range).toBeUndefined();
      // The second try asks only for what the first did not leave on disk.
      const resumedAt = Number(/^bytes=(\d+)-$/.exec(requests[1]!.range ?? '')?.[1]);
      expect(resumedAt).toBeGreaterThan(0);
      expect(resumedAt).toBeLessThanOrEqual(half);
    } finally {
      await client.close();
      await new Promise<void>((done) => http.close(() => done()));
    }
  });
});
