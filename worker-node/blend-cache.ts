/**
 * Blend files on the node's disk, by content hash: `blend_files/<sha256>.blend`. A file is
 * downloaded to a temporary name, its SHA-256 checked against the one the master gave, and only
 * then renamed into place, so a file in the cache is always complete and correct.
 *
 * Projects (`<sha256>.zip`: a .blend with its textures, caches and libraries) are downloaded and
 * verified the same way, then unpacked (see project-unpack.ts) into `projects/<sha256>.tmp-…` and
 * renamed to `projects/<sha256>/`; Blender then renders the main .blend inside, where its
 * relative `//` paths find the files beside it.
 *
 * Projects stored file by file (`<sha256>.manifest`, see project-files.ts) are laid out from the
 * node's file cache into `projects/<sha256>.manifest/`, downloading only the files it lacks; a
 * folder no task asked for in PROJECT_FOLDER_IDLE_MS is removed when another is laid out (its
 * files stay in the file cache).
 *
 * One cache may serve several render slots of a node (node-slots.ts), each with its own client
 * (its own credential): downloads of one file are shared in memory, and every file appears under
 * its final name by a rename, so two slots never see a half-written file.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { TaskAssignment } from '../protocol/schemas.ts';
import type { MasterClient } from './master-client.ts';
import { FileCache, layoutProject, parseManifest } from './project-files.ts';
import { resolveMainBlend, unpackLimitsFromEnv, unpackProject, type UnpackLimits } from './project-unpack.ts';

const BLEND_NAME = /^[0-9a-f]{64}\.(blend|zip|manifest)$/;
/** A manifest's project folder unused this long is removed when another is laid out. */
const PROJECT_FOLDER_IDLE_MS = 3_600_000;
const SHA256 = /^[0-9a-f]{64}$/;
const isDir = (path: string) =>
  stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );

export class BlendCache {
  readonly dir: string;
  /** Unpacked projects, one folder per archive hash. */
  readonly projectsDir: string;
  private readonly client: MasterClient | undefined;
  private readonly limits: UnpackLimits;
  /** Files of projects stored file by file, by SHA-256. */
  readonly files: FileCache;
  /** Downloads in flight, so a prefetch and a task asking for the same file share one. */
  private readonly pending = new Map<string, Promise<string>>();

  /** `client` downloads for callers that pass none to `ensure`. */
  constructor(workDir: string, client: MasterClient | undefined, limits: UnpackLimits = unpackLimitsFromEnv(), cacheBytes?: number) {
    this.dir = join(workDir, 'blend_files');
    this.projectsDir = join(workDir, 'projects');
    this.client = client;
    this.limits = limits;
    this.files = new FileCache(workDir, cacheBytes);
  }

  /**
   * The local path of the .blend to render for a task, downloading and verifying it when not
   * cached. For a project (`<sha256>.zip`) that is the main .blend inside the unpacked folder:
   * `input.main_blend`, or the only top-level .blend when the task names none. `client` is the
   * one to download with (the slot's own); the cache's by default.
   */
  ensure(blendFile: string, sha256: string, input: Partial<Pick<TaskAssignment, 'main_blend'>> = {}, client = this.client): Promise<string> {
    // Names come from the master: never let one choose a path on this disk.
    if (!BLEND_NAME.test(blendFile) || !SHA256.test(sha256) || !blendFile.startsWith(`${sha256}.`)) {
      return Promise.reject(new Error(`refusing blend file name "${blendFile.slice(0, 100)}": not <sha256>.blend, <sha256>.zip or <sha256>.manifest`));
    }
    if (blendFile.endsWith('.manifest')) return this.manifestProject(blendFile, sha256, client);
    const existing = this.pending.get(blendFile);
    const job =
      existing ??
      (blendFile.endsWith('.zip') ? this.fetchProject(blendFile, sha256, client) : this.fetch(blendFile, sha256, client)).finally(() =>
        this.pending.delete(blendFile),
      );
    if (!existing) this.pending.set(blendFile, job);
    return blendFile.endsWith('.zip') ? job.then((dir) => resolveMainBlend(dir, input.main_blend ?? null)) : job;
  }

  /**
   * The main .blend of a project stored file by file, laid out in `projects/<sha256>.manifest/`
   * from the file cache. The manifest's own main_blend counts: its bytes are verified by hash.
   */
  private async manifestProject(name: string, sha256: string, client: MasterClient | undefined): Promise<string> {
    const dir = join(this.projectsDir, name);
    const existing = this.pending.get(name);
    const job =
      existing ??
      (async () => {
        const manifestPath = await this.fetch(name, sha256, client);
        const manifest = parseManifest(await readFile(manifestPath, 'utf8'), this.limits);
        if (!(await isDir(dir))) {
          if (!client) throw new Error(`downloading the files of ${name}: no master client given`);
          await this.pruneProjectFolders(name);
          const tmp = `${dir}.tmp-${randomUUID()}`;
          try {
            await layoutProject(this.files, manifest, tmp, (file, dest) => client.downloadManifestFile(sha256, file, dest));
            await rename(tmp, dir);
          } catch (err) {
            if (!(await isDir(dir))) throw new Error(`laying out project ${sha256.slice(0, 12)}: ${(err as Error).message}`, { cause: err });
          } finally {
            await rm(tmp, { recursive: true, force: true });
          }
        }
        const now = new Date();
        await utimes(dir, now, now).catch(() => {});
        return resolveMainBlend(dir, manifest.main_blend);
      })().finally(() => this.pending.delete(name));
    if (!existing) this.pending.set(name, job);
    return job;
  }

  /** Removes the laid-out folders of other manifests that no task asked for in a while. */
  private async pruneProjectFolders(keep: string): Promise<void> {
    const names = await readdir(this.projectsDir).catch(() => [] as string[]);
    for (const name of names) {
      if (name === keep || !/^[0-9a-f]{64}\.manifest$/.test(name)) continue;
      const path = join(this.projectsDir, name);
      const info = await stat(path).catch(() => null);
      if (info && Date.now() - info.mtimeMs > PROJECT_FOLDER_IDLE_MS) await rm(path, { recursive: true, force: true });
    }
  }

  /** The unpacked folder of project archive `<sha256>.zip`. */
  private async fetchProject(zipName: string, sha256: string, client: MasterClient | undefined): Promise<string> {
    const dir = join(this.projectsDir, sha256);
    if (await isDir(dir)) return dir;
    const zipPath = await this.fetch(zipName, sha256, client);
    const tmp = `${dir}.tmp-${randomUUID()}`;
    try {
      await unpackProject(zipPath, tmp, this.limits);
      await rename(tmp, dir);
    } catch (err) {
      // Another download of the same project finished first: its folder is as good as ours.
      if (!(await isDir(dir))) throw new Error(`unpacking project ${sha256.slice(0, 12)}: ${(err as Error).message}`, { cause: err });
    } finally {
      await rm(tmp, { recursive: true, force: true });
      // The unpacked folder is the cache; the archive itself is not needed again.
      await rm(zipPath, { force: true });
    }
    return dir;
  }

  private async fetch(blendFile: string, sha256: string, client: MasterClient | undefined): Promise<string> {
    const path = join(this.dir, blendFile);
    if (
      await stat(path).then(
        (s) => s.isFile(),
        () => false,
      )
    )
      return path;
    await mkdir(this.dir, { recursive: true });
    const tmp = `${path}.part-${randomUUID()}`;
    try {
      if (!client) throw new Error(`downloading ${blendFile}: no master client given`);
      const got = await client.downloadBlend(blendFile, tmp);
      if (got !== sha256) throw new Error(`downloaded ${blendFile} has SHA-256 ${got}, expected ${sha256}: the download was corrupted`);
      await rename(tmp, path);
      return path;
    } finally {
      await rm(tmp, { force: true });
    }
  }
}
