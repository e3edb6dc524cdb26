/**
 * Stopping a render node: SIGTERM stops claiming, gives the task a grace period, then stops
 * Blender's whole process group and releases the lease, so another node takes the frames at once.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { jobStatus, makeScene, startMaster, startNode, submitJob, tempDir, waitFor, waitForJob, type Master } from './harness.ts';

const FRAMES = 24;

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('a render node told to stop', () => {
  const dir = tempDir('e2e-shutdown');
  const scene = join(dir, 'anim.blend');
  let master: Master;

  beforeAll(async () => {
    // Larger frames than elsewhere so the node is surely mid-render when the signal comes.
    makeScene('make_anim_scene.py', [scene, '--frames', String(FRAMES), '--width', '240', '--height', '160']);
    master = await startMaster({ name: 'shutdown' });
  });
  it('releases its task on SIGTERM, leaves no Blender behind, and another node finishes every frame once', async () => {
    const job = await submitJob(master.url, new Blob([readFileSync(scene)]), { start_frame: 1, end_frame: FRAMES, chunk_size: FRAMES });
    const first = startNode({ name: 'leaving', master: master.url, args: ['--grace-ms', '500'] });
    await waitFor('a frame to be uploaded', async () => (await jobStatus(master.url, job.job_id)).completed_frames >= 1, 120_000);

    const stoppedAt = Date.now();
    process.kill(first.process.pid!, 'SIGTERM');
    const code = await first.exited;
    expect(code).toBe(0);
    expect(Date.now() - stoppedAt).toBeLessThan(20_000);
    await waitFor('the node process group to be gone', async () => !groupAlive(first.process.pid!), 10_000);

    const mid = await jobStatus(master.url, job.job_id);
    expect(mid.completed_frames).toBeLessThan(FRAMES);
    expect(mid.running_frames).toBe(0); // released, not left to expire
    const tasks = (await (await fetch(`${master.url}/jobs/${job.job_id}/tasks`)).json()) as { tasks: { status: string; attempts: number }[] };
    expect(tasks.tasks).toEqual([expect.objectContaining({ status: 'queued', attempts: 0 })]);

    const second = startNode({ name: 'arriving', master: master.url });
    try {
      const done = await waitForJob(master.url, job.job_id, ['completed', 'failed'], 180_000);
      expect(done).toMatchObject({ status: 'completed', completed_frames: FRAMES });
      const list = (await (await fetch(`${master.url}/jobs/${job.job_id}/frames`)).json()) as { frames: { frame: number }[] };
      expect(list.frames.map((f) => f.frame)).toEqual(Array.from({ length: FRAMES }, (_, i) => i + 1));
    } finally {
      await second.stop();
    }
  });
});
