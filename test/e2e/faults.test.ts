/**
 * Fault injection: three real render nodes with real Blender talk to the real master through a
 * proxy that resets, stalls and slows their connections; nodes are SIGKILLed mid-render (Blender
 * with them) and restarted with the same work dir; the master is SIGKILLed once and restarted on
 * its persisted state. The job must still come out whole: every frame exactly once, decodable,
 * no task left running, and the counts in job_status equal to the frames in storage.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobStatusResponse } from '../../protocol/schemas.ts';
import { FaultProxy } from './fault-proxy.ts';
import {
  blenderChildren,
  jobStatus,
  killGroupNow,
  makeScene,
  processExists,
  startMaster,
  startNode,
  submitJob,
  tempDir,
  waitFor,
  waitForJob,
  type Master,
  type RenderNode,
} from './harness.ts';
import { decodePng } from './png.ts';

const FRAMES = 60;
const CHUNK = 3;
const WIDTH = 32;
const HEIGHT = 24;
/** Short leases so that the frames of a killed node come back in seconds, not a minute. */
const LEASE_MS = 5_000;
/** FAULT_SEED=n replays a run's fault decisions; the seed is printed with the proxy's stats. */
const SEED = Number(process.env.FAULT_SEED ?? 20_240_601);

interface TaskView {
  task_id: string;
  start_frame: number;
  end_frame: number;
  status: string;
  attempts: number;
  node_losses: number;
  worker_id: string | null;
}

interface FrameView {
  frame: number;
  url: string;
  sha256: string;
  size: number;
}

/** Everything a node printed, for asserting that it saw the faults and retried. */
function captureOutput(node: RenderNode): { text: string } {
  const captured = { text: '' };
  const append = (chunk: Buffer) => {
    captured.text += chunk.toString('utf8');
  };
  node.process.stdout!.on('data', append);
  node.process.stderr!.on('data', append);
  return captured;
}

async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url} answered ${response.status}: ${await response.text()}`);
  return (await response.json()) as T;
}

describe('a farm under faults: flaky network, nodes and master killed', () => {
  const dir = tempDir('e2e-faults');
  const scene = join(dir, 'anim.blend');
  let master: Master;
  let proxy: FaultProxy;
  const nodes = new Map<string, RenderNode>();
  const output = new Map<string, { text: string }[]>();
  const events: string[] = [];
  const startedAt = Date.now();
  const note = (event: string) => events.push(`${((Date.now() - startedAt) / 1000).toFixed(1)} s ${event}`);

  const launch = (name: string, workDir?: string): RenderNode => {
    // Previews on (the frames are small enough that a node would skip them): their uploads go
    // through the faults too, and they keep each frame long enough for a node to be caught mid-render.
    const node = startNode({ name, master: proxy.url, env: { FARM_PREVIEWS: 'on' }, ...(workDir ? { workDir } : {}) });
    nodes.set(name, node);
    output.set(name, [...(output.get(name) ?? []), captureOutput(node)]);
    return node;
  };

  /**
   * SIGKILLs a node while it holds a task and its Blender runs, and that Blender too (it leads
   * its own process group); returns when both are gone.
   */
  const killMidRender = async (name: string): Promise<string> => {
    const node = nodes.get(name)!;
    const pid = node.process.pid!;
    const workerId = workerIdOf(node);
    const { blenders, taskId } = await waitFor(
      `${name} to be rendering a task`,
      async () => {
        if (blenderChildren(pid).length === 0) return null;
        const { workers } = await getJson<{ workers: { worker_id: string; current_task_id: string | null }[] }>(`${master.url}/workers`);
        const current = workers.find((w) => w.worker_id === workerId)?.current_task_id;
        const found = blenderChildren(pid);
        return current && found.length > 0 ? { blenders: found, taskId: current } : null;
      },
      60_000,
      20,
    );
    killGroupNow(pid);
    for (const blender of blenders) killGroupNow(blender);
    await node.exited;
    await waitFor(`${name}'s Blender to be gone`, async () => blenders.every((b) => !processExists(b)), 10_000, 50);
    note(`killed ${name} mid-render (Blender ${blenders.join(', ')}, task ${taskId.slice(0, 8)})`);
    return taskId;
  };

  const workerIdOf = (node: RenderNode): string => (JSON.parse(readFileSync(join(node.workDir, 'worker.json'), 'utf8')) as { worker_id: string }).worker_id;

  const tasksOf = (jobId: string) => getJson<{ tasks: TaskView[] }>(`${master.url}/jobs/${jobId}/tasks`).then((r) => r.tasks);

  /**
   * Waits until `frames` frames are stored and every task that was retried has finished, so each
   * disruption hits fresh tasks: a task never pays for more than one of the kills below.
   */
  const settle = async (jobId: string, frames: number): Promise<JobStatusResponse> => {
    await waitFor(
      `${frames} frames and no retried task still running`,
      async () => {
        const status = await jobStatus(master.url, jobId);
        if (status.status === 'failed') throw new Error(`the job failed: ${status.error}`);
        if (status.completed_frames < frames) return false;
        // Retried: tried again after a failure (attempts) or after its node was lost (node_losses).
        return (await tasksOf(jobId)).every((t) => (t.attempts < 2 && t.node_losses === 0) || t.status === 'completed');
      },
      120_000,
      100,
    );
    return jobStatus(master.url, jobId);
  };

  beforeAll(async () => {
    makeScene('make_anim_scene.py', [scene, '--frames', String(FRAMES), '--width', String(WIDTH), '--height', String(HEIGHT)]);
    master = await startMaster({ name: 'faults', vars: { LEASE_MS: String(LEASE_MS) } });
    proxy = await FaultProxy.start(master.port, {
      seed: SEED,
      resetChance: 0.1,
      stallChance: 0.1,
      maxStallMs: 2_500,
      latencyChance: 0.2,
      maxLatencyMs: 150,
      maxFaults: 60,
      activeMs: 120_000,
    });
    for (const name of ['fault-a', 'fault-b', 'fault-c']) launch(name);
  });

  afterAll(async () => {
    for (const node of nodes.values()) {
      const blenders = node.process.pid ? blenderChildren(node.process.pid) : [];
      await node.stop('SIGKILL', 1_000);
      for (const blender of blenders) killGroupNow(blender);
    }
    await proxy?.close();
  });

  it('completes a 60-frame job with every frame stored exactly once, whatever was killed or cut', async () => {
    note('farm up');
    const job = await submitJob(master.url, new Blob([readFileSync(scene)]), {
      start_frame: 1,
      end_frame: FRAMES,
      chunk_size: CHUNK,
      name: 'faults',
    });

    // A node dies mid-render and comes back with the same work dir.
    await settle(job.job_id, 4);
    const idBefore = workerIdOf(nodes.get('fault-a')!);
    const killedTasks = [await killMidRender('fault-a')];
    const restartedA = launch('fault-a', nodes.get('fault-a')!.workDir);

    // The master dies (SIGKILL: no chance to flush anything) and restarts on its persisted state.
    const beforeMasterKill = await settle(job.job_id, 20);
    await master.stop('SIGKILL');
    note(`killed the master at ${beforeMasterKill.completed_frames} frames`);
    master = await startMaster({ name: 'faults', port: master.port, persistDir: master.persistDir, vars: { LEASE_MS: String(LEASE_MS) }, migrate: false });
    note('the master is back');
    const afterRestart = await jobStatus(master.url, job.job_id);
    // Persisted: nothing the master had recorded was forgotten.
    expect(afterRestart.completed_frames).toBeGreaterThanOrEqual(beforeMasterKill.completed_frames);
    expect(afterRestart.job_id).toBe(job.job_id);

    // Another node dies mid-render after the restart: fault-b, or, when the job's last ranges went
    // to the others (frames of this scene take a tenth of a second), whichever of them renders.
    await settle(job.job_id, 38);
    const second = await waitFor(
      'a node other than fault-a to be rendering a task',
      async () => {
        const { workers } = await getJson<{ workers: { worker_id: string; current_task_id: string | null }[] }>(`${master.url}/workers`);
        const busy = new Set(workers.filter((w) => w.current_task_id).map((w) => w.worker_id));
        return ['fault-b', 'fault-c'].find((name) => busy.has(workerIdOf(nodes.get(name)!))) ?? null;
      },
      60_000,
      20,
    );
    killedTasks.push(await killMidRender(second));
    launch(second, nodes.get(second)!.workDir);

    const done = await waitForJob(master.url, job.job_id, ['completed', 'failed'], 150_000);
    note(`the job is ${done.status}`);
    console.log(`faults: seed ${SEED}, proxy ${JSON.stringify(proxy.stats)}; ${events.join('; ')}`);
    expect(done.error).toBeNull();
    expect(done).toMatchObject({
      status: 'completed',
      total_frames: FRAMES,
      completed_frames: FRAMES,
      failed_frames: 0,
      running_frames: 0,
      queued_frames: 0,
      progress: 1,
    });

    // Every frame is listed exactly once, is served, matches its recorded hash and decodes.
    const { frames } = await getJson<{ frames: FrameView[] }>(`${master.url}/jobs/${job.job_id}/frames`);
    expect(frames.map((f) => f.frame)).toEqual(Array.from({ length: FRAMES }, (_, i) => i + 1));
    const pixels = new Set<string>();
    for (const frame of frames) {
      const response = await fetch(`${master.url}${frame.url}`);
      expect(response.status, `frame ${frame.frame}`).toBe(200);
      const bytes = Buffer.from(await response.arrayBuffer());
      expect(createHash('sha256').update(bytes).digest('hex'), `frame ${frame.frame}`).toBe(frame.sha256);
      expect(bytes.length).toBe(frame.size);
      const image = decodePng(bytes);
      expect([image.width, image.height], `frame ${frame.frame}`).toEqual([WIDTH, HEIGHT]);
      pixels.add(image.pixelHash);
    }
    expect(pixels.size).toBe(FRAMES); // animated: 60 different pictures, not one frame stored 60 times

    // No task is left running, and the tasks cover the range exactly once.
    const tasks = await tasksOf(job.job_id);
    expect(tasks.filter((t) => t.status !== 'completed')).toEqual([]);
    const covered = tasks.flatMap((t) => Array.from({ length: t.end_frame - t.start_frame + 1 }, (_, i) => t.start_frame + i)).sort((a, b) => a - b);
    expect(covered).toEqual(Array.from({ length: FRAMES }, (_, i) => i + 1));
    // The tasks the killed nodes held were finished all the same.
    for (const taskId of killedTasks) expect(tasks.find((t) => t.task_id === taskId)?.status, `task ${taskId}`).toBe('completed');

    // Storage holds exactly the frames job_status counts: nothing missing, nothing extra.
    const storage = await waitFor(
      'storage to hold exactly the recorded frames',
      async () => {
        const report = await getJson<{ recorded_frames: number; stored_objects: number; missing_frames: number[]; unrecorded_objects: number }>(
          `${master.url}/jobs/${job.job_id}/storage`,
        );
        return report.unrecorded_objects === 0 ? report : null;
      },
      30_000,
      250,
    );
    expect(storage).toMatchObject({ recorded_frames: FRAMES, stored_objects: FRAMES, missing_frames: [], unrecorded_objects: 0 });
    expect(done.completed_frames).toBe(storage.stored_objects);

    // Restarted nodes kept their identity: still three nodes, and fault-a has its old id.
    expect(workerIdOf(restartedA)).toBe(idBefore);
    const { workers } = await getJson<{ workers: { worker_id: string; name: string }[] }>(`${master.url}/workers`);
    expect(workers.map((w) => w.name).sort()).toEqual(['fault-a', 'fault-b', 'fault-c']);

    // The faults reached the nodes, and the nodes retried through them.
    expect(proxy.stats.resets).toBeGreaterThan(0);
    expect(proxy.stats.stalls).toBeGreaterThan(0);
    expect(proxy.stats.slowConnections).toBeGreaterThan(0);
    const allOutput = [...output.values()]
      .flat()
      .map((o) => o.text)
      .join('\n');
    expect(allOutput).toMatch(/retrying in \d+ ms/);
  }, 300_000);
});
