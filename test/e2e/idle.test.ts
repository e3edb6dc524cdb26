/**
 * Waiting is not work, end to end: a real render node idles against a real master (wrangler dev,
 * local D1/R2 and the WorkSignal Durable Object) for a little over a minute while every commit
 * the master makes to its storage is counted from the SQLite files under its persist dir; then a
 * job is submitted and must be picked up at once and rendered by real Blender.
 *
 * What is counted is commits that changed the farm's data. Local D1 also commits once per query
 * whatever it does (workerd bumps a local-development bookmark row, `_cf_METADATA`, on every
 * call; a deployed D1 bills no write for a read), and a local Durable Object records its name in
 * `__miniflare_do_name` when it starts: the shared watcher (storage-watch.ts, also used by the
 * benchmarks) counts those commits apart from the ones that changed data.
 *
 * With the default 60 s lease the idle minute covers a whole lease period: the node's 20 s long
 * polls wait on the Durable Object and write nothing, and its row's last_seen_at is rewritten
 * when it is a lease old (about 60 s after registering, then every fourth poll). Before the
 * Durable Object, each poll re-checked D1 every second and wrote last_seen_at each time: about
 * 57 commits per idle node-minute.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import type { WorkerListResponse } from '../../protocol/api.ts';
import { makeScene, startMaster, startNode, submitJob, tempDir, waitFor, waitForJob, type Master } from './harness.ts';
import { watchStorage } from './storage-watch.ts';

/** A little over a minute: a whole default lease period, so the first liveness write falls inside. */
const IDLE_MS = 65_000;

async function lastSeen(master: Master): Promise<number> {
  const list = (await (await fetch(`${master.url}/workers`)).json()) as WorkerListResponse;
  return Date.parse(list.workers[0]!.last_seen_at);
}

describe('an idle render node', () => {
  const dir = tempDir('e2e-idle');
  const scene = join(dir, 'tiny.blend');
  let master: Master;

  beforeAll(async () => {
    makeScene('make_anim_scene.py', [scene, '--frames', '1', '--width', '32', '--height', '24']);
    master = await startMaster({ name: 'idle' });
    startNode({ name: 'idler', master: master.url });
  });

  it("writes to the master's storage at most once per idle minute (its liveness), and still picks a job up within a second", async () => {
    await waitFor(
      'the node to register',
      async () => {
        const list = (await (await fetch(`${master.url}/workers`)).json()) as WorkerListResponse;
        return list.workers.length === 1 && list.workers[0]!.state === 'idle';
      },
      60_000,
    );
    // Registration is over and the node's first long poll waits.
    await sleep(1_000);

    const seenBefore = await lastSeen(master);
    const storage = watchStorage(master.persistDir);
    await sleep(IDLE_MS);
    const idle = storage.read();
    storage.stop();
    console.log(`idle for ${IDLE_MS / 1000} s: ${idle.dataCommits} commits that changed data, of ${idle.commits}`, idle.byFile);

    // One node, a little over a minute: one liveness write (about 60 s in), and one to spare.
    expect(idle.dataCommits).toBeLessThanOrEqual(2);
    // ... and that write happened: the node is still seen within a lease, not only at registration.
    expect(await lastSeen(master)).toBeGreaterThan(seenBefore);
    // Seen within a lease all along: the throttled write still keeps it online.
    const list = (await (await fetch(`${master.url}/workers`)).json()) as WorkerListResponse;
    expect(list.workers[0]).toMatchObject({ online: true, state: 'idle' });

    const submittedAt = Date.now();
    const job = await submitJob(master.url, new Blob([readFileSync(scene)]), { start_frame: 1, end_frame: 1 });
    const claimedAt = await waitFor(
      'the node to claim the job',
      async () => {
        const { tasks } = (await (await fetch(`${master.url}/jobs/${job.job_id}/tasks`)).json()) as { tasks: unknown[] };
        return tasks.length > 0 && Date.now();
      },
      10_000,
      20,
    );
    console.log(`picked up ${claimedAt - submittedAt} ms after the submission was sent`);
    expect(claimedAt - submittedAt).toBeLessThan(1_000);

    const status = await waitForJob(master.url, job.job_id, ['completed', 'failed'], 120_000);
    expect(status).toMatchObject({ status: 'completed', completed_frames: 1, failed_frames: 0 });
  });
});
