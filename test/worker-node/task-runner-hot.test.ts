/**
 * The task runner with a hot Blender (real Blender, a fake master): tasks of one job share one
 * Blender process, frames are uploaded as they are saved, and the runner says it is done with
 * Blender and the frames before it reports the task, so the poll loop can claim the next task while
 * the log and the report go out.
 */
import { randomUUID } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';
import type { TaskAssignment, UpdateTaskStatusRequest } from '../../protocol/schemas.ts';
import type { BlendCache } from '../../worker-node/blend-cache.ts';
import { HotBlender } from '../../worker-node/blender/hot-blender.ts';
import type { NodeConfig } from '../../worker-node/config.ts';
import type { MasterClient } from '../../worker-node/master-client.ts';
import { TaskRunner } from '../../worker-node/task-runner.ts';

const BLENDER = process.env.BLENDER ?? 'blender';
const SCENES = new URL('../scenes/', import.meta.url).pathname;

/** Everything the runner sent to the "master", in order. */
type Sent =
  | { kind: 'update'; body: UpdateTaskStatusRequest }
  | { kind: 'frame'; frame: number; task: string; png: boolean }
  | { kind: 'log'; task: string }
  | { kind: 'frames-done'; task: string };

function fakeMaster(sent: Sent[]): MasterClient {
  const fake = {
    async updateTask(body: UpdateTaskStatusRequest) {
      sent.push({ kind: 'update', body });
      return { task_id: body.task_id, status: body.status === 'completed' ? 'completed' : 'running', lease_expires_at: null, abort: false };
    },
    async uploadFrame(args: { taskId: string; frame: number; path: string }) {
      const bytes = readFileSync(args.path);
      sent.push({ kind: 'frame', frame: args.frame, task: args.taskId, png: bytes.subarray(1, 4).toString() === 'PNG' });
      return {};
    },
    async uploadLog(args: { taskId: string }) {
      sent.push({ kind: 'log', task: args.taskId });
    },
  };
  return fake as unknown as MasterClient;
}

function task(jobId: string, frames: number[], blendSha: string): TaskAssignment {
  return {
    task_id: randomUUID(),
    lease_id: randomUUID(),
    job_id: jobId,
    job_name: 'anim',
    frames,
    start_frame: frames[0]!,
    end_frame: frames.at(-1)!,
    blend_file: `${blendSha}.blend`,
    blend_sha256: blendSha,
    blend_size: 1,
    lease_expires_at: new Date(Date.now() + 60_000).toISOString(),
    lease_ms: 60_000,
    attempt: 1,
  } as TaskAssignment;
}

describe('task runner with a hot Blender', () => {
  const dir = tempDir('runner-hot');
  const blend = join(dir, 'anim.blend');
  const hot = new HotBlender({ blender: BLENDER, threads: 1, maxFrames: 0, maxMemMb: 0, idleMs: 0 });

  beforeAll(() => {
    const made = spawnSync(
      BLENDER,
      ['-b', '--factory-startup', '--python', join(SCENES, 'make_anim_scene.py'), '--', blend, '--frames', '6', '--width', '48', '--height', '32'],
      { encoding: 'utf8' },
    );
    if (made.status !== 0) throw new Error(made.stdout + made.stderr);
  }, 30_000);
  afterAll(async () => {
    await hot.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('two tasks of one job render in one Blender; frames are uploaded as saved, and Blender is free before each report', async () => {
    const sent: Sent[] = [];
    const config = { workDir: join(dir, 'work'), threads: 1, blender: BLENDER, hot: true } as NodeConfig;
    const cache = { ensure: async () => blend } as unknown as BlendCache;
    const log = { info: () => {}, warn: () => {}, error: () => {} };
    const runner = new TaskRunner({ config, client: fakeMaster(sent), cache, workerId: randomUUID(), log, hot });
    const sha = 'a'.repeat(64);
    const first = task('job-1', [1, 2], sha);
    const second = task('job-1', [3, 4, 5], sha);
    const stop = new AbortController().signal;

    for (const t of [first, second]) {
      const outcome = await runner.run(t, stop, { onFramesDone: () => sent.push({ kind: 'frames-done', task: t.task_id }) });
      expect(outcome).toBe('completed');
    }

    // One Blender for both tasks of the job.
    expect(hot.startedCount).toBe(1);
    const frames = sent.filter((s): s is Extract<Sent, { kind: 'frame' }> => s.kind === 'frame');
    expect(frames.map((f) => [f.frame, f.task])).toEqual([
      [1, first.task_id],
      [2, first.task_id],
      [3, second.task_id],
      [4, second.task_id],
      [5, second.task_id],
    ]);
    expect(frames.every((f) => f.png)).toBe(true);
    for (const t of [first, second]) {
      const mine = sent.filter((s) => ('task' in s ? s.task : s.body.task_id) === t.task_id);
      const order = mine.map((s) => (s.kind === 'update' ? s.body.status : s.kind));
      // running first; frames uploaded, then Blender and the poll loop are free before the log
      // and the completed report go out.
      expect(order[0]).toBe('running');
      expect(order.lastIndexOf('frame')).toBeLessThan(order.indexOf('frames-done'));
      expect(order.indexOf('frames-done')).toBeLessThan(order.indexOf('log'));
      expect(order.at(-1)).toBe('completed');
    }
  });
});
