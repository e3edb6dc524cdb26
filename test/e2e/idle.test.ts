/**
 * Waiting is not work, end to end: a real render node idles against a real master (wrangler dev,
 * local D1/R2 and the WorkSignal Durable Object) for a little over a minute while every commit
 * the master makes to its storage is counted from the SQLite files under its persist dir; then a
 * job is submitted and must be picked up at once and rendered by real Blender.
 *
 * What is counted is commits that changed the farm's data. Local D1 also commits once per query
 * whatever it does (workerd bumps a local-development bookmark row, `_cf_METADATA`, on every
 * call; a deployed D1 bills no write for a read), and a local Durable Object records its name in
 * `__miniflare_do_name` when it starts: those bookkeeping tables are left out of the comparison.
 *
 * With the default 60 s lease the idle minute covers a whole lease period: the node's 20 s long
 * polls wait on the Durable Object and write nothing, and its row's last_seen_at is rewritten
 * when it is half a lease old (about 40 s after registering, then every other poll). Before the
 * Durable Object, each poll re-checked D1 every second and wrote last_seen_at each time: about
 * 57 commits per idle node-minute.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WorkerListResponse } from '../../protocol/api.ts';
import { makeScene, startMaster, startNode, submitJob, tempDir, waitFor, waitForJob, type Master, type RenderNode } from './harness.ts';

/** A little over a minute: a whole default lease period, so the first liveness write falls inside. */
const IDLE_MS = 65_000;

/** Tables of local bookkeeping that a deployed master does not write (see the top of this file). */
const LOCAL_BOOKKEEPING = /^(_cf_|__miniflare_|sqlite_)/;

interface WatchedFile {
  db: import('node:sqlite').DatabaseSync;
  dataVersion: number;
  fingerprint: string;
  commits: number;
  dataChanges: number;
}

/**
 * Watches every SQLite file of the master's state (D1, Durable Objects, R2 metadata; not
 * miniflare's own metadata or trace store) from read-only connections: `PRAGMA data_version`
 * changes after another connection's commit, and a hash of every table but the bookkeeping ones
 * says whether that commit changed the farm's data. Idle writes are seconds apart, far more than
 * the 10 ms between looks, so each is seen on its own.
 */
function watchStorage(persistDir: string): { read(): { commits: number; dataChanges: number; byFile: Record<string, { commits: number; dataChanges: number }> }; stop(): void } {
  const { DatabaseSync } = createRequire(import.meta.url)('node:sqlite') as typeof import('node:sqlite');
  const root = join(persistDir, 'v3');
  const files = new Map<string, WatchedFile>();
  const fingerprint = (db: import('node:sqlite').DatabaseSync) => {
    const hash = createHash('sha256');
    const tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`).all() as { name: string }[];
    for (const { name } of tables) {
      if (LOCAL_BOOKKEEPING.test(name)) continue;
      hash.update(name).update(JSON.stringify(db.prepare(`SELECT * FROM "${name}"`).all(), (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));
    }
    return hash.digest('hex');
  };
  const scan = () => {
    for (const name of readdirSync(root, { recursive: true }) as string[]) {
      if (!name.endsWith('.sqlite') || name.endsWith('metadata.sqlite') || name.startsWith('observability')) continue;
      const path = join(root, name);
      if (files.has(path)) continue;
      try {
        const db = new DatabaseSync(path, { readOnly: true });
        const dataVersion = (db.prepare('PRAGMA data_version').get() as { data_version: number }).data_version;
        // A file that appears later holds only bookkeeping when found (a Durable Object's first start).
        files.set(path, { db, dataVersion, fingerprint: fingerprint(db), commits: 0, dataChanges: 0 });
      } catch {
        // Being created: the next scan tries again.
      }
    }
  };
  scan();
  const look = () => {
    for (const file of files.values()) {
      const dataVersion = (file.db.prepare('PRAGMA data_version').get() as { data_version: number }).data_version;
      if (dataVersion === file.dataVersion) continue;
      file.dataVersion = dataVersion;
      file.commits++;
      const now = fingerprint(file.db);
      if (now !== file.fingerprint) file.dataChanges++;
      file.fingerprint = now;
    }
  };
  const lookTimer = setInterval(look, 10);
  const scanTimer = setInterval(scan, 500);
  return {
    read() {
      look();
      const byFile = Object.fromEntries([...files].filter(([, f]) => f.commits > 0).map(([path, f]) => [relative(root, path), { commits: f.commits, dataChanges: f.dataChanges }]));
      const sum = (key: 'commits' | 'dataChanges') => [...files.values()].reduce((n, f) => n + f[key], 0);
      return { commits: sum('commits'), dataChanges: sum('dataChanges'), byFile };
    },
    stop() {
      clearInterval(lookTimer);
      clearInterval(scanTimer);
      for (const file of files.values()) file.db.close();
    },
  };
}

async function lastSeen(master: Master): Promise<number> {
  const list = (await (await fetch(`${master.url}/workers`)).json()) as WorkerListResponse;
  return Date.parse(list.workers[0]!.last_seen_at);
}

describe('an idle render node', () => {
  const dir = tempDir('e2e-idle');
  const scene = join(dir, 'tiny.blend');
  let master: Master;
  let node: RenderNode;

  beforeAll(async () => {
    makeScene('make_anim_scene.py', [scene, '--frames', '1', '--width', '32', '--height', '24']);
    master = await startMaster({ name: 'idle' });
    node = startNode({ name: 'idler', master: master.url });
  });

  afterAll(async () => {
    await node?.stop();
    await master?.stop();
  });

  it("writes to the master's storage at most once per idle minute (its liveness), and still picks a job up within a second", async () => {
    await waitFor('the node to register', async () => {
      const list = (await (await fetch(`${master.url}/workers`)).json()) as WorkerListResponse;
      return list.workers.length === 1 && list.workers[0]!.state === 'idle';
    }, 60_000);
    // Registration is over and the node's first long poll waits.
    await sleep(1_000);

    const seenBefore = await lastSeen(master);
    const storage = watchStorage(master.persistDir);
    await sleep(IDLE_MS);
    const idle = storage.read();
    storage.stop();
    console.log(`idle for ${IDLE_MS / 1000} s: ${idle.dataChanges} commits that changed data, of ${idle.commits} seen`, idle.byFile);

    // One node, a little over a minute: one liveness write (about 40 s in), and one to spare.
    expect(idle.dataChanges).toBeLessThanOrEqual(2);
    // ... and that write happened: the node is still seen within a lease, not only at registration.
    expect(await lastSeen(master)).toBeGreaterThan(seenBefore);
    // Seen within a lease all along: the throttled write still keeps it online.
    const list = (await (await fetch(`${master.url}/workers`)).json()) as WorkerListResponse;
    expect(list.workers[0]).toMatchObject({ online: true, state: 'idle' });

    const submittedAt = Date.now();
    const job = await submitJob(master.url, new Blob([readFileSync(scene)]), { start_frame: 1, end_frame: 1 });
    const claimedAt = await waitFor('the node to claim the job', async () => {
      const { tasks } = (await (await fetch(`${master.url}/jobs/${job.job_id}/tasks`)).json()) as { tasks: unknown[] };
      return tasks.length > 0 && Date.now();
    }, 10_000, 20);
    console.log(`picked up ${claimedAt - submittedAt} ms after the submission was sent`);
    expect(claimedAt - submittedAt).toBeLessThan(1_000);

    const status = await waitForJob(master.url, job.job_id, ['completed', 'failed'], 120_000);
    expect(status).toMatchObject({ status: 'completed', completed_frames: 1, failed_frames: 0 });
  });
});
