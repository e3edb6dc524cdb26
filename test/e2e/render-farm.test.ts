/**
 * The farm end to end: the real master (wrangler dev, local D1/R2), two real render nodes and
 * real Blender on a generated animated scene with a particle simulation.
 */
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLENDER, makeScene, startMaster, startNode, submitJob, tempDir, waitForJob, type Master, type RenderNode } from './harness.ts';
import { decodePng } from './png.ts';
import { statusField } from './upload-measure.ts';

const execFileAsync = promisify(execFile);
const FRAMES = 12;
const WIDTH = 96;
const HEIGHT = 64;

describe('a farm of two render nodes', () => {
  const dir = tempDir('e2e-farm');
  const scene = join(dir, 'anim.blend');
  let master: Master;
  const nodes: RenderNode[] = [];

  beforeAll(async () => {
    makeScene('make_anim_scene.py', [scene, '--frames', String(FRAMES), '--width', String(WIDTH), '--height', String(HEIGHT)]);
    master = await startMaster({ name: 'farm' });
    // alpha renders in a hot Blender (the default), beta one Blender process per task: both
    // paths must produce the frames a fresh `blender -f N` does.
    nodes.push(startNode({ name: 'alpha', master: master.url }), startNode({ name: 'beta', master: master.url, args: ['--no-hot'] }));
  });

  // Not left running through the next describe.
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await master?.stop();
  });

  it("renders a job submitted with the seed's curl command; every frame equals a local blender -f render, pixel for pixel", async () => {
    // The seed README's command, byte for byte but for the file path and host.
    const curl = spawnSync(
      'curl',
      [
        '-s',
        '-X',
        'POST',
        `${master.url}/submit_job`,
        '-H',
        'accept: application/json',
        '-H',
        'Content-Type: multipart/form-data',
        '-F',
        `blend_file=@${scene}`,
        '-F',
        'start_frame=1',
        '-F',
        `end_frame=${FRAMES}`,
      ],
      { encoding: 'utf8' },
    );
    expect(curl.status).toBe(0);
    const submitted = JSON.parse(curl.stdout) as { job_id: string; status: string; total_frames: number };
    expect(submitted).toMatchObject({ status: 'queued', total_frames: FRAMES });

    const status = await waitForJob(master.url, submitted.job_id, ['completed', 'failed'], 240_000);
    expect(status).toMatchObject({ status: 'completed', total_frames: FRAMES, completed_frames: FRAMES, failed_frames: 0, running_frames: 0 });

    const list = (await (await fetch(`${master.url}/jobs/${submitted.job_id}/frames`)).json()) as {
      frames: { frame: number; url: string; sha256: string; worker_id: string }[];
    };
    expect(list.frames.map((f) => f.frame)).toEqual(Array.from({ length: FRAMES }, (_, i) => i + 1));
    // Both nodes did part of the work.
    expect(new Set(list.frames.map((f) => f.worker_id)).size).toBe(2);

    const farmFrames = new Map<number, Buffer>();
    for (const frame of list.frames) {
      const response = await fetch(`${master.url}${frame.url}`);
      expect(response.status).toBe(200);
      farmFrames.set(frame.frame, Buffer.from(await response.arrayBuffer()));
    }

    // Reference renders: a fresh Blender per frame, as a person would check a frame by hand.
    const localDir = join(dir, 'local');
    for (const frame of list.frames) {
      await execFileAsync(BLENDER, [
        '-b',
        '--factory-startup',
        '--disable-autoexec',
        '-noaudio',
        scene,
        '-o',
        join(localDir, 'f_######'),
        '-t',
        '1',
        '-f',
        String(frame.frame),
      ]);
    }
    expect(readdirSync(localDir)).toHaveLength(FRAMES);

    const hashes = new Set<string>();
    for (const [frame, bytes] of farmFrames) {
      const farm = decodePng(bytes);
      expect([farm.width, farm.height]).toEqual([WIDTH, HEIGHT]);
      const local = decodePng(readFileSync(join(localDir, `f_${String(frame).padStart(6, '0')}.png`)));
      expect(farm.pixelHash, `frame ${frame}`).toBe(local.pixelHash);
      hashes.add(farm.pixelHash);
    }
    // The scene is animated: frames must differ, or the comparison above proves little.
    expect(hashes.size).toBe(FRAMES);

    // Each task's Blender log was uploaded and is readable.
    const tasks = (await (await fetch(`${master.url}/jobs/${submitted.job_id}/tasks`)).json()) as { tasks: { log_url: string | null; status: string }[] };
    expect(tasks.tasks.every((t) => t.status === 'completed' && t.log_url)).toBe(true);
    const log = await (await fetch(`${master.url}${tasks.tasks[0]!.log_url}`)).text();
    expect(log).toMatch(/Saved: /);
  });

  it("fails a job whose .blend is truncated with Blender's own error, and the node renders the next job", async () => {
    const corrupt = join(dir, 'corrupt.blend');
    writeFileSync(corrupt, readFileSync(scene).subarray(0, 2048));
    const bad = await submitJob(master.url, new Blob([readFileSync(corrupt)]), { start_frame: 1, end_frame: 2, max_attempts: 2 }, 'corrupt.blend');
    const failed = await waitForJob(master.url, bad.job_id, ['failed', 'completed'], 120_000);
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatch(/corrupt|DNA|truncated|not a blend/i);
    expect(failed.failure_reason).toBe('corrupt_file');
    expect(failed.error).toMatch(/\/log/);

    const good = await submitJob(master.url, new Blob([readFileSync(scene)]), { start_frame: 3, end_frame: 4, name: 'after-corrupt' });
    const done = await waitForJob(master.url, good.job_id, ['completed', 'failed'], 120_000);
    expect(done).toMatchObject({ status: 'completed', completed_frames: 2 });
  });

  it('each node daemon stayed within 150 MB of resident memory through those jobs (Blender apart)', () => {
    for (const node of nodes) {
      const peakMb = statusField(node.process.pid!, 'VmHWM') / 2 ** 20;
      expect(peakMb, node.name).toBeGreaterThan(20); // read from a live process
      expect(peakMb, node.name).toBeLessThanOrEqual(150);
    }
  });
});

describe('a node started while the master is down', () => {
  it('waits, then registers and renders once the master is up', async () => {
    const dir = tempDir('e2e-late-master');
    const scene = join(dir, 'anim.blend');
    makeScene('make_anim_scene.py', [scene, '--frames', '2', '--width', '32', '--height', '24']);
    const { freePort } = await import('./harness.ts');
    const port = await freePort();
    const node = startNode({ name: 'early', master: `http://127.0.0.1:${port}` });
    let master: Master | undefined;
    try {
      await new Promise((r) => setTimeout(r, 3_000));
      expect(node.process.exitCode).toBeNull(); // still waiting, not crashed
      master = await startMaster({ name: 'late', port });
      const job = await submitJob(master.url, new Blob([readFileSync(scene)]), { start_frame: 1, end_frame: 2 });
      const status = await waitForJob(master.url, job.job_id, ['completed', 'failed'], 120_000);
      expect(status).toMatchObject({ status: 'completed', completed_frames: 2 });
    } finally {
      await node.stop();
      await master?.stop();
    }
  });
});
