/**
 * A .blend with a missing texture and a missing linked library renders without an error (the
 * texture comes out magenta, the linked object is absent): the farm says so on the job, whether
 * the node renders in its hot Blender (the default) or one Blender process per task.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeScene, startMaster, startNode, submitJob, tempDir, waitForJob, type Master } from './harness.ts';

const TEXTURE = 'missing image //textures/missing_texture.png: it renders magenta';
const LIBRARY = 'missing library //missing_library.blend: what the file links from it is left out of the render';
const LINKED = 'missing linked object "LibCube" from //missing_library.blend: it is left out of the render';

describe('missing textures and libraries', () => {
  const dir = tempDir('e2e-warnings');
  const scene = join(dir, 'missing.blend');
  let master: Master;

  beforeAll(async () => {
    makeScene('make_missing_files_scene.py', [scene, '--frames', '2']);
    // Short leases: a stopped node's last long poll may still claim a task, which then waits
    // for its lease to run out before the next node gets it.
    master = await startMaster({ name: 'warnings', vars: { LEASE_MS: '5000' } });
  });
  for (const mode of [
    { label: 'a hot Blender', args: [] },
    { label: 'a Blender per task', args: ['--no-hot'] },
  ]) {
    it(`are listed once each in job_status.warnings when ${mode.label} renders the job`, async () => {
      const node = startNode({ name: `warn${mode.args.length}`, master: master.url, args: mode.args });
      try {
        const job = await submitJob(master.url, new Blob([readFileSync(scene)]), { start_frame: 1, end_frame: 2, chunk_size: 1 });
        const done = await waitForJob(master.url, job.job_id, ['completed', 'failed'], 120_000);
        expect(done).toMatchObject({ status: 'completed', completed_frames: 2, error: null });
        expect([...done.warnings].sort()).toEqual([LIBRARY, LINKED, TEXTURE].sort());
      } finally {
        await node.stop();
      }
    });
  }
});
