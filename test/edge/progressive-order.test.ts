/**
 * Jobs submitted with `order: progressive`: first, last and middle frame first, then the frames
 * halfway between, each handed out exactly once, counted, checked on upload and completed.
 */
import { env } from 'cloudflare:workers';
import { unzipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import type { TaskListResponse } from '../../protocol/api.ts';
import {
  call,
  claim,
  expectError,
  expectRefusedUnchanged,
  expireLease,
  json,
  jobRow,
  jobStatus,
  pngBytes,
  postJson,
  registerWorker,
  renderAll,
  submitJob,
  submitOk,
  update,
  uploadFrame,
  claimAll,
} from './helpers.ts';

/**
 * The progressive order of `frames`, written independently of the master's arithmetic: first and
 * last, then the middle, then by how many times two divides the distance from the middle (most
 * first), in frame order within each of those.
 */
function expectedOrder(frames: number[]): number[] {
  const last = frames.length - 1;
  const middle = Math.floor(last / 2);
  const twos = (n: number): number => (n % 2 === 0 ? 1 + twos(n / 2) : 0);
  const rank = (i: number) => (i === 0 || i === last ? -2 : i === middle ? -1 : 100 - twos(Math.abs(i - middle)));
  return frames
    .map((_, i) => i)
    .sort((a, b) => rank(a) - rank(b) || a - b)
    .map((i) => frames[i]!);
}

const range = (from: number, to: number, step = 1) => Array.from({ length: Math.floor((to - from) / step) + 1 }, (_, i) => from + i * step);

describe('a progressive job of 9 frames', () => {
  it('hands out 1 and 9, then 5, then 3 and 7, then the rest, one frame a claim', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 9, chunk_size: 1, order: 'progressive' });
    expect(job.total_frames).toBe(9);
    const tasks = await claimAll(await registerWorker());
    expect(tasks.map((t) => t.frames)).toEqual([[1], [9], [5], [3], [7], [2], [4], [6], [8]]);
    expect(await jobStatus(job.job_id)).toMatchObject({ order: 'progressive', total_frames: 9, running_frames: 9, queued_frames: 0 });
  });

  it('in chunks of 2 never crosses a pass; uploads outside a task are refused; it counts, completes and zips every frame', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 9, chunk_size: 2, order: 'progressive' });
    const worker = await registerWorker();
    const tasks = await claimAll(worker);
    expect(tasks.map((t) => t.frames)).toEqual([[1, 9], [5], [3, 7], [2, 4], [6, 8]]);
    // The task list says which frames each task renders: from start to end, every frame_step-th.
    const listed = await json<TaskListResponse>(await call(`/jobs/${job.job_id}/tasks`), 200);
    expect(listed.tasks.map((t) => [t.start_frame, t.end_frame, t.frame_step])).toEqual([
      [1, 9, 8],
      [2, 4, 2],
      [3, 7, 4],
      [5, 5, 1],
      [6, 8, 2],
    ]);

    // Frame 5 lies between the first task's frames, but is another task's.
    await expectError(await uploadFrame(worker, tasks[0]!, 5, pngBytes(5)), 400, 'frame 5 is not in task');
    await expectError(await uploadFrame(worker, tasks[2]!, 5, pngBytes(5)), 400, 'frame 5 is not in task');

    // A task reporting completed without all its frames is told which one is missing.
    await json(await uploadFrame(worker, tasks[2]!, 3, pngBytes(3)), 201);
    await expectError(await update(worker, tasks[2]!, 'completed'), 409, 'frame(s) 7 of task');
    expect(await jobStatus(job.job_id)).toMatchObject({ completed_frames: 1, running_frames: 8, queued_frames: 0 });

    await renderAll(worker, tasks[0]!);
    expect(await jobStatus(job.job_id)).toMatchObject({ status: 'running', completed_frames: 3, running_frames: 6 });
    for (const task of tasks.slice(1)) await renderAll(worker, task);
    expect(await jobStatus(job.job_id)).toMatchObject({ status: 'completed', completed_frames: 9, total_frames: 9, progress: 1 });

    const zip = unzipSync(new Uint8Array(await (await call(`/jobs/${job.job_id}/frames.zip`)).arrayBuffer()));
    expect(Object.keys(zip).sort()).toEqual(range(1, 9).map((f) => `frame_00000${f}.png`));
  });

  it('a task given back keeps its frames, less those already stored', async () => {
    await submitOk({ start_frame: 1, end_frame: 9, chunk_size: 4, order: 'progressive' });
    const worker = await registerWorker();
    const [first, second, third] = [await claim(worker), await claim(worker), await claim(worker)];
    expect([first.frames, second.frames, third.frames]).toEqual([[1, 9], [5], [3, 7]]);
    await json(await uploadFrame(worker, third, 7, pngBytes(7)), 201);
    await expireLease(third.task_id);
    const again = await claim(worker);
    expect(again).toMatchObject({ task_id: third.task_id, start_frame: 3, end_frame: 7, frames: [3] });
  });

  it('tasks whose leases ran out go again in the order they were first handed out, not by frame', async () => {
    await submitOk({ start_frame: 1, end_frame: 9, chunk_size: 1, order: 'progressive' });
    const worker = await registerWorker();
    const handedOut = [];
    for (let i = 0; i < 5; i++) handedOut.push(await claim(worker));
    expect(handedOut.map((t) => t.frames)).toEqual([[1], [9], [5], [3], [7]]);
    // Frame 3's lease runs out before frame 5's: the middle still goes first.
    await expireLease(handedOut[3]!.task_id, 2_000);
    await expireLease(handedOut[2]!.task_id, 1_000);
    expect((await claim(worker)).frames).toEqual([5]);
    expect((await claim(worker)).frames).toEqual([3]);
  });

  it("a task that fails for good names its frames and their step in the job's error", async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 9, chunk_size: 2, order: 'progressive', max_attempts: 1 });
    const worker = await registerWorker();
    const task = await claim(worker);
    expect(task.frames).toEqual([1, 9]);
    await json(await update(worker, task, 'failed', { message: 'Blender crashed', failure_reason: 'crash' }), 200);
    const status = await jobStatus(job.job_id);
    expect(status.status).toBe('failed');
    expect(status.error).toContain("frames 1-9 (step 8 through the job's frames) failed after 1 attempt(s): Blender crashed");
  });
});

describe('a progressive job of 100 frames with adaptive chunks', () => {
  it('hands out 0, 99 and 49 first, then every frame once in the progressive order', async () => {
    await submitOk({ start_frame: 0, end_frame: 99, order: 'progressive' });
    const tasks = await claimAll(await registerWorker());
    const handedOut = tasks.flatMap((t) => t.frames);
    expect(handedOut.slice(0, 3)).toEqual([0, 99, 49]);
    expect([...handedOut].sort((a, b) => a - b)).toEqual(range(0, 99));
    expect(handedOut).toEqual(expectedOrder(range(0, 99)));
  });
});

describe('a progressive frame list 1-100x5', () => {
  it('hands out its 20 listed frames once each, first, last and middle first, and no other frame', async () => {
    const job = await submitOk({ frames: '1-100x5', chunk_size: 3, order: 'progressive' });
    expect(job.total_frames).toBe(20);
    const worker = await registerWorker();
    const tasks = await claimAll(worker);
    const listed = range(1, 96, 5);
    const handedOut = tasks.flatMap((t) => t.frames);
    expect(handedOut.slice(0, 3)).toEqual([1, 96, 46]);
    expect(handedOut).toEqual(expectedOrder(listed));
    expect([...handedOut].sort((a, b) => a - b)).toEqual(listed);
    expect(tasks.every((t) => t.frames.length <= 3)).toBe(true);

    // An unlisted frame between a task's frames, and a listed one of another task, are refused.
    const wide = tasks.find((t) => t.frames.length > 1 && t.frames[1]! - t.frames[0]! > 5)!;
    await expectError(await uploadFrame(worker, wide, wide.frames[0]! + 1, pngBytes(1)), 400, 'is not in task');
    await expectError(await uploadFrame(worker, wide, wide.frames[0]! + 5, pngBytes(1)), 400, 'is not in task');

    for (const task of tasks) await renderAll(worker, task);
    expect(await jobStatus(job.job_id)).toMatchObject({ status: 'completed', completed_frames: 20, total_frames: 20, frames: '1-96x5', order: 'progressive' });
  });
});

describe('a million-frame progressive job', () => {
  it('is one job row, and a chunk of the finest pass is every other frame', async () => {
    const job = await submitOk({ start_frame: 0, end_frame: 999_999, chunk_size: 10_000, order: 'progressive' });
    expect((await env.DB.prepare(`SELECT COUNT(*) AS n FROM tasks`).first<{ n: number }>())!.n).toBe(0);
    const worker = await registerWorker();
    expect((await claim(worker)).frames).toEqual([0, 999_999]);
    expect((await claim(worker)).frames).toEqual([499_999]);
    // The finest pass, the frames an odd distance from the middle frame 499,999 but for 0, is the
    // last 499,999 positions: the cursor stands at the first of them.
    await env.DB.prepare(`UPDATE jobs SET next_frame = 500001 WHERE id = ?`).bind(job.job_id).run();
    const fine = await claim(worker);
    expect(fine.frames).toEqual(range(2, 20_000, 2));
    expect(fine).toMatchObject({ start_frame: 2, end_frame: 20_000 });
    expect(await jobRow(job.job_id)).toMatchObject({ next_frame: 510_001 });
  });
});

describe('order is checked', () => {
  it('POST /submit_job refuses an unknown order with a 400 and leaves nothing behind', async () => {
    await expectRefusedUnchanged(() => submitJob({ start_frame: 1, end_frame: 9, order: 'random' }), 400, 'order must be one of sequential, progressive');
  });

  it('POST /jobs refuses an unknown order, and takes progressive (the blob is looked up only after the fields are checked)', async () => {
    const sha = 'c'.repeat(64);
    await expectError(
      await postJson('/jobs', { blob_sha256: sha, kind: 'blend', start_frame: 1, end_frame: 9, order: 'backwards' }),
      400,
      'order must be one of sequential, progressive',
    );
    await expectError(await postJson('/jobs', { blob_sha256: sha, kind: 'blend', start_frame: 1, end_frame: 9, order: 'progressive' }), 404, `no blob ${sha}`);
  });

  it('a job submitted without order is sequential', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 4, chunk_size: 1 });
    expect(await jobStatus(job.job_id)).toMatchObject({ order: 'sequential' });
    expect((await claimAll(await registerWorker())).map((t) => t.frames)).toEqual([[1], [2], [3], [4]]);
  });
});
