/**
 * Projects stored file by file (protocol/manifest.ts) on the node: a cache of files by SHA-256
 * under `<work dir>/files/`, kept under a size limit (`--cache-size`, least recently used out
 * first), and the project folders laid out from it.
 *
 *  - Every download is streamed through SHA-256 to a temporary name and renamed into place only
 *    when the hash matches, so a cached file is complete and correct when it arrives; a try cut
 *    short resumes from the bytes already there (MasterClient's download, a `Range` request). A file
 *    changed later (a disk error, a process writing through a link) is caught before it is used
 *    again: each cached file's size, mtime and inode are remembered once verified, and a file whose
 *    signature differs is hashed again, and downloaded again when it no longer matches.
 *  - A project folder never shares a writable file with the cache: cached files are read-only, and
 *    a folder gets read-only hard links to them when the node runs as an ordinary user (a write
 *    fails; a save by rename replaces only the link), copies otherwise (root ignores file modes),
 *    cloned copy-on-write where the file system can (COPYFILE_FICLONE). Files in folders Blender
 *    writes into (simulation and bake caches) are always private copies.
 *  - Paths are checked with the rules of project archives (unsafeRelativePath, projectPathConflict,
 *    the same file and byte limits) before anything touches the disk.
 */
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, copyFile, link, mkdir, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { manifestOverLimits, manifestSchema, projectPathConflict, type Manifest } from '../protocol/manifest.ts';
import { sha256File } from './master-client.ts';
import { UnsafeArchiveError, type UnpackLimits } from './project-unpack.ts';

const SHA256 = /^[0-9a-f]{64}$/;

/** Default for `--cache-size`: 20 GiB. */
export const DEFAULT_CACHE_BYTES = 20 * 1024 ** 3;

/** Folders Blender writes into while it renders (point caches, bakes): their files are copied. */
const WRITTEN_FOLDER = /^(blendcache_[^/]*|cache[^/]*|bake[^/]*)$/i;

/** Downloads one file by hash to `dest` and returns the SHA-256 of what arrived. */
export type FetchFile = (sha256: string, dest: string) => Promise<string>;

interface Entry {
  size: number;
  /** Size, mtime and inode when last verified: a file that differs is hashed again. */
  signature: string;
  lastUsed: number;
}

const signatureOf = (s: { size: number; mtimeMs: number; ino: number }) => `${s.size}:${s.mtimeMs}:${s.ino}`;

/** Files by SHA-256 on the node's disk, under a size limit, least recently used out first. */
export class FileCache {
  readonly dir: string;
  readonly maxBytes: number;
  private entries: Map<string, Entry> | null = null;
  private loading: Promise<Map<string, Entry>> | null = null;
  /** Files a layout is using right now: never evicted under it. */
  private readonly pinned = new Map<string, number>();
  private readonly pending = new Map<string, Promise<string>>();
  private clock = 0;

  constructor(workDir: string, maxBytes = DEFAULT_CACHE_BYTES) {
    this.dir = join(workDir, 'files');
    this.maxBytes = maxBytes;
  }

  /** Bytes of the cached files. */
  async bytes(): Promise<number> {
    let total = 0;
    for (const e of (await this.index()).values()) total += e.size;
    return total;
  }

  /** The files cached at start, oldest first (by mtime); signatures unknown, so each is hashed once before use. */
  private index(): Promise<Map<string, Entry>> {
    if (this.entries) return Promise.resolve(this.entries);
    this.loading ??= (async () => {
      await mkdir(this.dir, { recursive: true });
      const found: [string, number, number][] = [];
      for (const name of await readdir(this.dir)) {
        const path = join(this.dir, name);
        if (!SHA256.test(name)) {
          // A download cut short by a crash.
          if (/\.part-/.test(name)) await rm(path, { force: true });
          continue;
        }
        const s = await stat(path).catch(() => null);
        if (s?.isFile()) found.push([name, s.size, s.mtimeMs]);
      }
      found.sort((a, b) => a[2] - b[2]);
      this.entries = new Map(found.map(([sha, size]) => [sha, { size, signature: '', lastUsed: ++this.clock }]));
      return this.entries;
    })();
    return this.loading;
  }

  /** Keeps `shas` from eviction until the returned function is called. */
  pin(shas: Iterable<string>): () => void {
    const list = [...new Set(shas)];
    for (const sha of list) this.pinned.set(sha, (this.pinned.get(sha) ?? 0) + 1);
    return () => {
      for (const sha of list) {
        const n = (this.pinned.get(sha) ?? 1) - 1;
        if (n <= 0) this.pinned.delete(sha);
        else this.pinned.set(sha, n);
      }
    };
  }

  /**
   * The path of cached file `sha256` of `size` bytes, verified: downloaded with `fetch` when it is
   * not cached, or cached but no longer what its name says.
   * @returns the path and whether it was downloaded now
   */
  async get(sha256: string, size: number, fetch: FetchFile): Promise<{ path: string; downloaded: boolean }> {
    if (!SHA256.test(sha256)) throw new UnsafeArchiveError(`refusing file hash "${sha256.slice(0, 80)}"`);
    const entries = await this.index();
    const path = join(this.dir, sha256);
    const entry = entries.get(sha256);
    if (entry) {
      const s = await stat(path).catch(() => null);
      if (s?.isFile() && s.size === size && (signatureOf(s) === entry.signature || (await sha256File(path)) === sha256)) {
        entry.signature = signatureOf(s);
        entry.lastUsed = ++this.clock;
        return { path, downloaded: false };
      }
      // Changed since it was verified (or gone): never use it, fetch it again.
      entries.delete(sha256);
      await rm(path, { force: true });
    }
    const existing = this.pending.get(sha256);
    if (existing) return { path: await existing, downloaded: false };
    const job = this.download(sha256, size, fetch).finally(() => this.pending.delete(sha256));
    this.pending.set(sha256, job);
    return { path: await job, downloaded: true };
  }

  private async download(sha256: string, size: number, fetch: FetchFile): Promise<string> {
    const entries = await this.index();
    const path = join(this.dir, sha256);
    const tmp = `${path}.part-${randomUUID()}`;
    try {
      const got = await fetch(sha256, tmp);
      if (got !== sha256) throw new Error(`file ${sha256.slice(0, 12)} arrived with SHA-256 ${got}: the download was corrupted`);
      const s = await stat(tmp);
      if (s.size !== size) throw new Error(`file ${sha256.slice(0, 12)} arrived with ${s.size} bytes, the manifest says ${size}`);
      // Read-only: a hard link to it in a project folder cannot be written through (but by root).
      await chmod(tmp, 0o444);
      await rename(tmp, path);
      const placed = await stat(path);
      entries.set(sha256, { size, signature: signatureOf(placed), lastUsed: ++this.clock });
      await this.evict();
      return path;
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** Removes least recently used files, not pinned, until the cache is within its limit. */
  private async evict(): Promise<void> {
    const entries = await this.index();
    let total = await this.bytes();
    if (total <= this.maxBytes) return;
    const byAge = [...entries].sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    for (const [sha, entry] of byAge) {
      if (total <= this.maxBytes) break;
      if (this.pinned.has(sha)) continue;
      entries.delete(sha);
      await unlink(join(this.dir, sha)).catch(() => {});
      total -= entry.size;
    }
  }
}

/** A manifest read from the master, checked as a project archive's entries are. */
export function parseManifest(text: string, limits: UnpackLimits): Manifest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new UnsafeArchiveError('the manifest is not valid JSON');
  }
  const parsed = manifestSchema.safeParse(value);
  if (!parsed.success)
    throw new UnsafeArchiveError(
      `the manifest is refused: ${parsed.error.issues
        .map((i) => i.message)
        .join('; ')
        .slice(0, 500)}`,
    );
  const over = manifestOverLimits(parsed.data, limits);
  if (over) throw new UnsafeArchiveError(over);
  // The schema checks this too; a node checks again before it touches its disk.
  const conflict = projectPathConflict(parsed.data.files.map((f) => ({ path: f.path, kind: 'file' as const })));
  if (conflict) throw new UnsafeArchiveError(conflict);
  return parsed.data;
}

/** Whether a project file must be a private copy: Blender may write into its folder. */
const inWrittenFolder = (path: string) =>
  path
    .split('/')
    .slice(0, -1)
    .some((part) => WRITTEN_FOLDER.test(part));

/**
 * Lays out the project of `manifest` in `destDir` (which must not exist) from `cache`, fetching the
 * files it lacks. Hard links (read-only) where that protects the cache, private copies elsewhere.
 * @returns bytes downloaded now
 */
export async function layoutProject(
  cache: FileCache,
  manifest: Manifest,
  destDir: string,
  fetch: FetchFile,
  options: { links?: boolean } = {},
): Promise<{ downloadedBytes: number }> {
  // Root can write a read-only file, so links would not protect the cache from it.
  const links = options.links ?? (typeof process.getuid === 'function' && process.getuid() !== 0);
  const root = resolve(destDir);
  const unpin = cache.pin(manifest.files.map((f) => f.sha256));
  let downloadedBytes = 0;
  try {
    await mkdir(dirname(root), { recursive: true });
    await mkdir(root);
    try {
      for (const file of manifest.files) {
        const target = resolve(root, file.path);
        if (!target.startsWith(root + sep)) throw new UnsafeArchiveError(`file "${file.path}" would land outside the project folder`);
        const { path, downloaded } = await cache.get(file.sha256, file.size, fetch);
        if (downloaded) downloadedBytes += file.size;
        await mkdir(dirname(target), { recursive: true });
        if (links && !inWrittenFolder(file.path)) {
          try {
            await link(path, target);
            continue;
          } catch (err) {
            // Another file system, or one without hard links: a copy does as well.
            if (!['EXDEV', 'EPERM', 'EMLINK', 'ENOTSUP'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
          }
        }
        await copyFile(path, target, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
        await chmod(target, 0o644);
      }
    } catch (err) {
      await rm(root, { recursive: true, force: true });
      throw err;
    }
  } finally {
    unpin();
  }
  return { downloadedBytes };
}

/** `--cache-size` as bytes: a number with an optional K, M, G or T (powers of 1024). */
export function parseCacheSize(value: string): number | null {
  const match = /^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$/i.exec(value.trim());
  if (!match) return null;
  const power = ' KMGT'.indexOf((match[2] || ' ').toUpperCase());
  const bytes = Math.floor(Number(match[1]) * 1024 ** power);
  return bytes > 0 ? bytes : null;
}
