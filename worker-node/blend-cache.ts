/**
 * Blend files on the node's disk, by content hash: `blend_files/<sha256>.blend`. A file is
 * downloaded to a temporary name, its SHA-256 checked against the one the master gave, and only
 * then renamed into place, so a file in the cache is always complete and correct.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { MasterClient } from './master-client.ts';

const BLEND_NAME = /^[0-9a-f]{64}\.blend$/;
const SHA256 = /^[0-9a-f]{64}$/;

export class BlendCache {
  readonly dir: string;
  private readonly client: MasterClient;
  /** Downloads in flight, so a prefetch and a task asking for the same file share one. */
  private readonly pending = new Map<string, Promise<string>>();

  constructor(workDir: string, client: MasterClient) {
    this.dir = join(workDir, 'blend_files');
    this.client = client;
  }

  /** The local path of a task's blend, downloading and verifying it when not cached. */
  ensure(blendFile: string, sha256: string): Promise<string> {
    // Names come from the master: never let one choose a path on this disk.
    if (!BLEND_NAME.test(blendFile) || !SHA256.test(sha256) || blendFile !== `${sha256}.blend`) {
      return Promise.reject(new Error(`refusing blend file name "${blendFile.slice(0, 100)}": not <sha256>.blend`));
    }
    const existing = this.pending.get(sha256);
    if (existing) return existing;
    const job = this.fetch(blendFile, sha256).finally(() => this.pending.delete(sha256));
    this.pending.set(sha256, job);
    return job;
  }

  private async fetch(blendFile: string, sha256: string): Promise<string> {
    const path = join(this.dir, blendFile);
    if (await stat(path).then((s) => s.isFile(), () => false)) return path;
    await mkdir(this.dir, { recursive: true });
    const tmp = `${path}.part-${randomUUID()}`;
    try {
      const got = await this.client.downloadBlend(blendFile, tmp);
      if (got !== sha256) throw new Error(`downloaded ${blendFile} has SHA-256 ${got}, expected ${sha256}: the download was corrupted`);
      await rename(tmp, path);
      return path;
    } finally {
      await rm(tmp, { force: true });
    }
  }
}
