/** Nodes registering and claiming work: what a claim hands out, to whom, and never twice. */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import type { RegisterWorkerResponse, TaskAssignment } from '../../protocol/schemas.ts';
import {
  blendBytes,
  claim,
  countRows,
  getJob,
  json,
  jobRow,
  postJson,
  registerWorker,
  sha256,
  submitOk,
  taskRow,
  pngBytes,
  putFrame,
  update,
  uploadFrame,
} from './helpers.ts';

describe('POST /register_worker', () => {
  it('a new node gets an id and the lease length, and is recorded with its details', async () => {
    const res = await postJson('/register_worker', { name: 'render-01', hostname: 'render-01.lan', blender_version: '4.2.1', threads: 16 });
    const body = await json<RegisterWorkerResponse>(res, 201);
    expect(body).toEqual({
      worker_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      name: 'render-01',
      lease_ms: 60_000,
      node_token: expect.stringMatching(/^farm_node_[\w-]{43}$/),
    });
    const row = await env.DB.prepare(`SELECT * FROM workers WHERE id = ?`).bind(body.worker_id).first();
    expect(row).toMatchObject({ name: 'render-01', hostname: 'render-01.lan', blender_version: '4.2.1', threads: 16, enabled: 1 });
    // Only the credential's hash is kept.
    expect(row!.credential_hash).toBe(await sha256(new TextEncoder().encode(body.node_token!)));
  });

  it('a node that registers again with its old worker_id keeps its identity instead of becoming a second node', async () => {
    const first = await registerWorker('render-02');
    const again = await json<RegisterWorkerResponse>(await postJson('/register_worker', { name: 'render-02b', worker_id: first }), 201);
    expect(again.worker_id).toBe(first);
    expect((await countRows()).workers).toBe(1);
    expect(await env.DB.prepare(`SELECT name FROM workers WHERE id = ?`).bind(first).first('name')).toBe('render-02b');
  });
});

describe('POST /get_job', () => {
  it('a node asking for work gets a leased task with its frames, the blend to download and the lease', async () => {
    const blend = blendBytes(5000, 'claim');
    const job = await submitOk({ start_frame: 1, end_frame: 100, chunk_size: 10 }, blend);
    const worker = await registerWorker();
    const before = Date.now();

    const task = await claim(worker);

    expect(task).toMatchObject({
      job_id: job.job_id,
      frames: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
      start_frame: 1,
      end_frame: 10,
      blend_file: job.blend_file,
      blend_sha256: await sha256(blend),
      blend_size: blend.length,
      lease_ms: 60_000,
      attempt: 1,
    });
    expect(task.task_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(task.lease_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(Date.parse(task.lease_expires_at)).toBeGreaterThanOrEqual(before + 60_000 - 1000);
    expect(await taskRow(task.task_id)).toMatchObject({ status: 'running', worker_id: worker, lease_id: task.lease_id });
    expect(await jobRow(job.job_id)).toMatchObject({ status: 'running', next_frame: 11 });
  });

  it('a node gets 204 with an empty body when nothing is queued', async () => {
    const worker = await registerWorker();
    const res = await getJob(worker);
    expect(res.status).toBe(204);
    expect(await res.text()).toBe('');
  });

  it('successive claims walk the frame range in chunks and stop with 204 once every frame is handed out', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 7, chunk_size: 3 });
    const worker = await registerWorker();
    const ranges: number[][] = [];
    for (let i = 0; i < 3; i++) ranges.push((await claim(worker)).frames);
    expect(ranges).toEqual([[1, 2, 3], [4, 5, 6], [7]]);
    expect((await getJob(worker)).status).toBe(204);
    expect(await jobRow(job.job_id)).toMatchObject({ next_frame: 8 });
  });

  it('50 nodes claiming one 60-frame job at the same moment never get the same frame twice, and the next 50 get only the 10 left', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 60, chunk_size: 1 });
    const workers = await Promise.all(Array.from({ length: 50 }, (_, i) => registerWorker(`node-${i}`)));

    const responses = await Promise.all(workers.map((w) => getJob(w)));

    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(50);
    const tasks = await Promise.all(responses.map((r) => r.json() as Promise<TaskAssignment>));
    const frames = tasks.flatMap((t) => t.frames);
    expect(frames).toHaveLength(50);
    expect(new Set(frames).size).toBe(50);
    expect(new Set(tasks.map((t) => t.lease_id)).size).toBe(50);
    // D1 agrees: 50 running tasks, one per node, covering disjoint frames.
    const { results } = await env.DB.prepare(`SELECT start_frame, end_frame, worker_id FROM tasks WHERE job_id = ? ORDER BY start_frame`)
      .bind(job.job_id)
      .all<{ start_frame: number; end_frame: number; worker_id: string }>();
    expect(results.map((r) => r.start_frame)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(new Set(results.map((r) => r.worker_id)).size).toBe(50);
    expect(await jobRow(job.job_id)).toMatchObject({ next_frame: 51 });

    // A second wave of 50 finds only the 10 frames left: 10 claims succeed, 40 get "no work".
    const second = await Promise.all(workers.map((w) => getJob(w)));
    expect(second.filter((r) => r.status === 200)).toHaveLength(10);
    expect(second.filter((r) => r.status === 204)).toHaveLength(40);
    const more = await Promise.all(second.filter((r) => r.status === 200).map((r) => r.json() as Promise<TaskAssignment>));
    const all = [...frames, ...more.flatMap((t) => t.frames)].sort((x, y) => x - y);
    expect(all).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
  });

  it('a job without chunk_size is sized from measured frame times: one frame first, then whole frames for about two minutes', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 100 });
    const worker = await registerWorker();
    const probe = await claim(worker);
    expect(probe.frames).toEqual([1]);
    await json(await putFrame(worker, probe, 1, pngBytes(1), { renderMs: 1_700 }), 201);
    await json(await update(worker, probe, 'completed'), 200);

    const sized = await claim(worker);

    // 120 s / 1.7 s per frame = 70.6: the chunk is 70 whole frames, not a fractional range.
    expect(sized.frames).toEqual(Array.from({ length: 70 }, (_, i) => i + 2));
    const row = await env.DB.prepare(`SELECT next_frame, typeof(next_frame) AS type FROM jobs WHERE id = ?`).bind(job.job_id).first();
    expect(row).toEqual({ next_frame: 72, type: 'integer' });
    const task = await taskRow(sized.task_id);
    expect([task!.start_frame, task!.end_frame]).toEqual([2, 71]);
  });

  it('a higher-priority job submitted later is handed out before an older, lower-priority one', async () => {
    const low = await submitOk({ start_frame: 1, end_frame: 4, chunk_size: 2, priority: 10, name: 'low' });
    const high = await submitOk({ start_frame: 101, end_frame: 104, chunk_size: 2, priority: 90, name: 'high' });
    const worker = await registerWorker();

    const first = await claim(worker);
    const second = await claim(worker);
    const third = await claim(worker);

    expect([first.job_id, first.frames]).toEqual([high.job_id, [101, 102]]);
    expect([second.job_id, second.frames]).toEqual([high.job_id, [103, 104]]);
    expect([third.job_id, third.frames]).toEqual([low.job_id, [1, 2]]);
  });

  it('a released task goes back to the queue without using an attempt, and the next node gets exactly those frames', async () => {
    await submitOk({ start_frame: 1, end_frame: 20, chunk_size: 5 });
    const a = await registerWorker('a');
    const b = await registerWorker('b');
    const taken = await claim(a);

    const released = await json<{ status: string }>(await update(a, taken, 'released', { message: 'node shutting down' }), 200);
    expect(released.status).toBe('queued');
    expect(await taskRow(taken.task_id)).toMatchObject({ status: 'queued', lease_id: null, worker_id: null, attempts: 0 });

    const retaken = await claim(b);
    expect(retaken.task_id).toBe(taken.task_id);
    expect(retaken.frames).toEqual(taken.frames);
    expect(retaken.lease_id).not.toBe(taken.lease_id);
    expect(retaken.attempt).toBe(1);
    // The releasing node's lease is dead: its updates are refused.
    expect((await update(a, taken, 'running')).status).toBe(409);
  });

  it('a task released after some of its frames were uploaded is handed out with only the frames still missing', async () => {
    await submitOk({ start_frame: 1, end_frame: 5, chunk_size: 5 });
    const a = await registerWorker('a');
    const b = await registerWorker('b');
    const taken = await claim(a);
    await json(await uploadFrame(a, taken, 1, pngBytes(1)), 201);
    await json(await uploadFrame(a, taken, 3, pngBytes(3)), 201);
    await json(await update(a, taken, 'released'), 200);

    const retaken = await claim(b);

    expect(retaken).toMatchObject({ task_id: taken.task_id, start_frame: 1, end_frame: 5, frames: [2, 4, 5] });
  });

  // More on waking waiting polls (resume, priority, requeue, enable, many at once) and on what a
  // waiting poll costs D1: work-signal.test.ts.
  it('a node long-polling with wait_ms picks up a job submitted while it waits, without waiting out the poll', async () => {
    const worker = await registerWorker();
    const started = Date.now();
    const polling = postJson('/get_job', { worker_id: worker, wait_ms: 10_000 });
    await scheduler.wait(200);
    const job = await submitOk({ start_frame: 3, end_frame: 3 });

    const res = await polling;

    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ job_id: job.job_id, frames: [3] });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('a long poll with no work answers 204 once wait_ms has passed', async () => {
    const worker = await registerWorker();
    const started = Date.now();
    const res = await postJson('/get_job', { worker_id: worker, wait_ms: 1_200 });
    expect(res.status).toBe(204);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_100);
  });
});
