/**
 * Machines die, links drop, the job still finishes (docs/design.md, Reliability): real render
 * nodes with real Blender against the real master, with a short lease. A node SIGKILLed and
 * restarted over and over hands its work back at each restart and finishes the job; nodes that
 * lose the master for longer than a lease while another node keeps claiming cost no attempt
 * (max_attempts 1) and no more rework than the frames they had in hand; and frames on which every
 * node dies fail the job after max_node_losses, saying so.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TaskInfo } from '../../protocol/api.ts';
import { FaultProxy, type FaultPlan } from './fault-proxy.ts';
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

/**
 * Short, so that a link drop outlasts it in seconds; long enough that a task of a killed node
 * would stay leased well past the few seconds a restart may take to get it rendering again.
 */
const LEASE_MS = 10_000;
/** How soon after a restart the work it lost must be rendering again (a lease is 10 s). */
const RESUME_WITHIN_MS = 5_000;

/** A proxy that forwards untouched: the link is either up or (closed) down. */
const CLEAN_LINK: FaultPlan = {
  seed: 1,
  resetChance: 0,
  stallChance: 0,
  maxStallMs: 0,
  latencyChance: 0,
  maxLatencyMs: 0,
  maxFaults: 0,
  activeMs: 0,
};

async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url} answered ${response.status}: ${await response.text()}`);
  return (await response.json()) as T;
}

const workerIdOf = (node: RenderNode): string => (JSON.parse(readFileSync(join(node.workDir, 'worker.json'), 'utf8')) as { worker_id: string }).worker_id;

describe('nodes that die, restart and lose their link', () => {
  const dir = tempDir('e2e-node-losses');
  const scene = join(dir, 'anim.blend');
  let master: Master;
  const running = new Set<RenderNode>();
  const startedAt = Date.now();
  const events: string[] = [];
  const note = (event: string) => events.push(`${((Date.now() - startedAt) / 1000).toFixed(1)} s ${event}`);

  const launch = (name: string, url: string, workDir?: string): RenderNode => {
    const node = startNode({ name, master: url, ...(workDir ? { workDir } : {}) });
    running.add(node);
    workDirs.add(node.workDir);
    return node;
  };

  const tasksOf = (jobId: string) => getJson<{ tasks: TaskInfo[] }>(`${master.url}/jobs/${jobId}/tasks`).then((r) => r.tasks);

  /** The task `workerId` holds now, by the node list. */
  const currentTask = async (workerId: string): Promise<string | null> => {
    const { workers } = await getJson<{ workers: { worker_id: string; current_task_id: string | null }[] }>(`${master.url}/workers`);
    return workers.find((w) => w.worker_id === workerId)?.current_task_id ?? null;
  };

  /** SIGKILLs a node and its Blender (its own process group) once both are up and it holds a task of `jobId` (`accept` decides which). */
  const killHolding = async (node: RenderNode, jobId: string, accept: (task: TaskInfo) => boolean = () => true): Promise<TaskInfo> => {
    const pid = node.process.pid!;
    const { blenders, task } = await waitFor(
      `${node.name} to be rendering a task`,
      async () => {
        const blenders = blenderChildren(pid);
        if (blenders.length === 0) return null;
        const taskId = await currentTask(workerIdOf(node));
        const task = taskId ? (await tasksOf(jobId)).find((t) => t.task_id === taskId) : undefined;
        return task && accept(task) ? { blenders: blenderChildren(pid), task } : null;
      },
      90_000,
      20,
    );
    killGroupNow(pid);
    for (const blender of blenders) killGroupNow(blender);
    await node.exited;
    running.delete(node);
    await waitFor(`${node.name}'s Blender to be gone`, async () => blenders.every((b) => !processExists(b)), 10_000, 50);
    note(`killed ${node.name} holding frames ${task.start_frame}-${task.end_frame} (${task.node_losses} losses before)`);
    return task;
  };

  beforeAll(async () => {
    // Big enough that a frame takes a moment on a shared core, so kills land mid-task.
    makeScene('make_anim_scene.py', [scene, '--frames', '40', '--width', '200', '--height', '150']);
    master = await startMaster({ name: 'node-losses', vars: { LEASE_MS: String(LEASE_MS) } });
  });

  /** Jobs of this file: one left unfinished by a failed test would be served first to the next test's nodes. */
  const jobs: string[] = [];
  const submit = async (fields: Record<string, string | number>) => {
    const job = await submitJob(master.url, new Blob([readFileSync(scene)]), fields);
    jobs.push(job.job_id);
    return job;
  };

  /** Work dirs of this test's nodes, whose workers are disabled when it ends. */
  const workDirs = new Set<string>();

  afterEach(async () => {
    for (const jobId of jobs.splice(0)) await fetch(`${master.url}/jobs/${jobId}/cancel`, { method: 'POST' });
    // A killed node's long poll may still be open on the master and claim the next test's work for
    // a node that is gone: disabled nodes claim nothing.
    for (const workDir of workDirs) {
      try {
        const { worker_id } = JSON.parse(readFileSync(join(workDir, 'worker.json'), 'utf8')) as { worker_id: string };
        await fetch(`${master.url}/workers/${worker_id}/disable`, { method: 'POST' });
      } catch {
        // Never registered.
      }
    }
    workDirs.clear();
    for (const node of running) {
      const blenders = node.process.pid ? blenderChildren(node.process.pid) : [];
      await node.stop('SIGKILL', 1_000);
      for (const blender of blenders) killGroupNow(blender);
    }
    running.clear();
  });

  afterAll(() => {
    console.log(`node losses: ${events.join('; ')}`);
  });

  it('a node SIGKILLed mid-render and restarted 8 times: each time its work renders again within seconds, and the job completes with no failed frame', async () => {
    const FRAMES = 16;
    const job = await submit({ start_frame: 1, end_frame: FRAMES, chunk_size: 1, name: 'storm' });
    let node = launch('storm', master.url);
    const workDir = node.workDir;
    const resumeMs: number[] = [];
    for (let restart = 0; restart < 8; restart++) {
      const lost = await killHolding(node, job.job_id, (t) => t.status === 'running');
      const framesBefore = (await jobStatus(master.url, job.job_id)).completed_frames;
      const restartedAt = Date.now();
      node = launch('storm', master.url, workDir);
      // Its lost task is leased again (a node loss counted), or already done.
      await waitFor(
        `frames ${lost.start_frame}-${lost.end_frame} to be taken again after restart ${restart + 1}`,
        async () => {
          const now = (await tasksOf(job.job_id)).find((t) => t.task_id === lost.task_id)!;
          return now.status === 'completed' || (now.status === 'running' && now.node_losses > lost.node_losses);
        },
        60_000,
        50,
      );
      resumeMs.push(Date.now() - restartedAt);
      // A new frame before the next kill, so that the job moves on.
      await waitFor('a new frame', async () => (await jobStatus(master.url, job.job_id)).completed_frames > framesBefore, 60_000, 50);
      note(`restart ${restart + 1}: work taken again ${resumeMs.at(-1)} ms after the restart`);
    }

    const done = await waitForJob(master.url, job.job_id, ['completed', 'failed'], 120_000);
    expect(done.error).toBeNull();
    expect(done).toMatchObject({ status: 'completed', completed_frames: FRAMES, failed_frames: 0 });
    const { frames } = await getJson<{ frames: { frame: number }[] }>(`${master.url}/jobs/${job.job_id}/frames`);
    expect(frames.map((f) => f.frame)).toEqual(Array.from({ length: FRAMES }, (_, i) => i + 1));
    // Without the hand-back at restart, the lost task waits for its lease (10 s) to run out.
    expect(resumeMs.length).toBe(8);
    for (const ms of resumeMs) expect(ms).toBeLessThan(RESUME_WITHIN_MS);
    // A lost node is not a failed render: no attempt was used on any task.
    expect((await tasksOf(job.job_id)).every((t) => t.attempts === 1)).toBe(true);
  }, 400_000);

  it('nodes that lose the master for longer than a lease, while another node keeps claiming, cost no attempt: the job completes with max_attempts 1', async () => {
    const FRAMES = 30;
    const proxy = await FaultProxy.start(master.port, CLEAN_LINK);
    const proxyPort = proxy.port;
    let link: FaultProxy | null = proxy;
    try {
      const job = await submit({ start_frame: 1, end_frame: FRAMES, chunk_size: 3, max_attempts: 1, name: 'link-drop' });
      const far = [launch('far-a', proxy.url), launch('far-b', proxy.url)];
      // Both far nodes hold a task with Blender running before the link drops.
      const farIds = await Promise.all(
        far.map(async (node) => {
          await waitFor(
            `${node.name} to hold a task`,
            async () => {
              try {
                return blenderChildren(node.process.pid!).length > 0 && (await currentTask(workerIdOf(node))) !== null;
              } catch {
                return false; // worker.json not written yet
              }
            },
            90_000,
            50,
          );
          return workerIdOf(node);
        }),
      );
      const near = launch('near', master.url);

      await proxy.close();
      link = null;
      await sleep(300);
      // What the far nodes had in hand when the link dropped: the most that may be rendered twice.
      const atDrop = await tasksOf(job.job_id);
      note(
        `at the drop: ${JSON.stringify(atDrop.map((t) => [t.start_frame, t.status, t.worker_id?.slice(0, 8), t.node_losses, t.lease_expires_at]))}; far ${farIds.map((id) => id.slice(0, 8))}`,
      );
      // Any node's but the near one's: a node of an earlier test, killed while its long poll was
      // open, may hold a claim too, and that lease runs out like the far nodes'.
      const nearId = await waitFor('the near node to register', async () => workerIdOf(near), 30_000);
      const inHand = atDrop.filter((t) => t.status === 'running' && t.worker_id !== nearId);
      note(`link down; the far nodes held frames ${inHand.map((t) => `${t.start_frame}-${t.end_frame}`).join(', ')}`);
      expect(inHand.length).toBeGreaterThan(0);
      await sleep(LEASE_MS * 1.5);
      link = await FaultProxy.start(master.port, CLEAN_LINK, proxyPort);
      note('link up');

      const done = await waitForJob(master.url, job.job_id, ['completed', 'failed'], 180_000);
      expect(done.error).toBeNull();
      expect(done).toMatchObject({ status: 'completed', completed_frames: FRAMES, failed_frames: 0 });
      const { frames } = await getJson<{ frames: { frame: number }[] }>(`${master.url}/jobs/${job.job_id}/frames`);
      expect(frames.map((f) => f.frame)).toEqual(Array.from({ length: FRAMES }, (_, i) => i + 1));
      const tasks = await tasksOf(job.job_id);
      // The near node took over work whose lease ran out: the drop was real.
      note(`at the end: ${JSON.stringify(tasks.map((t) => [t.start_frame, t.status, t.worker_id?.slice(0, 8), t.node_losses]))}`);
      const lost = tasks.filter((t) => t.node_losses > 0);
      note(`taken over: ${lost.map((t) => `${t.start_frame}-${t.end_frame}`).join(', ') || 'nothing'}`);
      expect(lost.length).toBeGreaterThan(0);
      // Rework: only tasks the far nodes had in hand were rendered again.
      for (const task of lost)
        expect(
          inHand.map((t) => t.task_id),
          `frames ${task.start_frame}-${task.end_frame}`,
        ).toContain(task.task_id);
      expect(tasks.every((t) => t.attempts === 1 && t.status === 'completed')).toBe(true);
    } finally {
      await link?.close();
    }
  }, 400_000);

  it('frames on which every node dies fail the job after max_node_losses, saying nodes kept disappearing on them', async () => {
    const job = await submit({
      start_frame: 31,
      end_frame: 33,
      chunk_size: 3,
      max_node_losses: 3,
      name: 'machine-killer',
    });
    let node = launch('victim', master.url);
    const workDir = node.workDir;
    // Whoever takes frames 31-33 dies at once, as on a machine the .blend brings down.
    for (let death = 0; death < 3; death++) {
      // Held by this life: leased again after each death (a fresh process also runs Blender to
      // list its devices, while the master still shows the task its earlier life held).
      await killHolding(node, job.job_id, (t) => t.start_frame === 31 && t.status === 'running' && t.node_losses === death);
      node = launch('victim', master.url, workDir);
    }

    const failed = await waitForJob(master.url, job.job_id, ['completed', 'failed'], 60_000);
    note(`the machine killer: ${failed.status}: ${failed.error}`);
    expect(failed).toMatchObject({ status: 'failed', failure_reason: 'lease_expired', max_node_losses: 3 });
    expect(failed.error).toContain('nodes kept disappearing while rendering frames 31-33');
    expect(failed.error).toContain('3 times in a row');
  }, 300_000);
});
