/**
 * A node lost is not a render failed (docs/design.md, Reliability): a lease that runs out, or a
 * node that restarts, puts the task back without using an attempt; only a task lost
 * `max_node_losses` times in a row fails its job. A holder back from a dropped link keeps its
 * work, paused jobs never strand a task, adaptive chunks are bounded, and a failure report is
 * counted once however often it is applied.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import type { RegisterWorkerResponse, TaskAssignment, UpdateTaskStatusResponse } from '../../protocol/schemas.ts';
import { createJobSchema } from '../../protocol/schemas.ts';
import { batchTogether, groupCommitting } from '../../edge/batch-together.ts';
import { readConfig } from '../../edge/env.ts';
import { claimTask } from '../../edge/scheduler.ts';
import { failTask } from '../../edge/task-outcomes.ts';
import {
  claim,
  expectError,
  getJob,
  json,
  jobRow,
  pngBytes,
  postJson,
  putFrame,
  registerWorker,
  renderAll,
  submitJob,
  submitOk,
  taskRow,
  update,
  expireLease,
  jobStatus,
} from './helpers.ts';

/** Registers (again) as a node process whose life is `bootId`. */
async function registerBoot(name: string, bootId: string, workerId?: string): Promise<string> {
  const res = await postJson('/register_worker', { name, boot_id: bootId, ...(workerId ? { worker_id: workerId } : {}) });
  return (await json<RegisterWorkerResponse>(res, 201)).worker_id;
}

const BOOT_1 = '11111111-1111-4111-8111-111111111111';
const BOOT_2 = '22222222-2222-4222-8222-222222222222';

describe('a lease that runs out is a node lost, not an attempt used', () => {
  it('the task goes to the next node without using an attempt, even on the last one, and the job completes', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2, max_attempts: 1 });
    const [dead, alive] = [await registerWorker('dead'), await registerWorker('alive')];
    const lost = await claim(dead);
    await expireLease(lost.task_id);

    const taken = await claim(alive);

    expect(taken).toMatchObject({ task_id: lost.task_id, frames: [1, 2], attempt: 1 });
    expect(await taskRow(lost.task_id)).toMatchObject({ attempts: 1, node_losses: 1, worker_id: alive, status: 'running' });
    await renderAll(alive, taken);
    expect(await jobStatus(job.job_id)).toMatchObject({ status: 'completed', failed_frames: 0, error: null });
  });

  it(`a task lost max_node_losses times in a row fails its job, saying nodes kept disappearing on those frames`, async () => {
    const job = await submitOk({ start_frame: 5, end_frame: 6, chunk_size: 2, max_node_losses: 3 });
    const nodes = [await registerWorker('n1'), await registerWorker('n2'), await registerWorker('n3'), await registerWorker('n4')];
    let task = await claim(nodes[0]!);
    for (const node of nodes.slice(1, 3)) {
      await expireLease(task.task_id);
      task = await claim(node);
      expect((await jobStatus(job.job_id)).status).toBe('running');
    }
    expect(await taskRow(task.task_id)).toMatchObject({ node_losses: 2, attempts: 1 });
    await expireLease(task.task_id);

    expect((await getJob(nodes[3]!)).status).toBe(204);

    const failed = await jobStatus(job.job_id);
    expect(failed).toMatchObject({ status: 'failed', failure_reason: 'lease_expired', max_node_losses: 3 });
    expect(failed.error).toContain('nodes kept disappearing while rendering frames 5-6');
    expect(failed.error).toContain('3 times in a row (max_node_losses 3)');
    expect(await taskRow(task.task_id)).toMatchObject({ status: 'failed', attempts: 1 });
  });

  it('the losses must be in a row: a lease that ends otherwise (a failed render) starts the count again', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1, max_node_losses: 2, max_attempts: 3 });
    const [a, b] = [await registerWorker('a'), await registerWorker('b')];
    let task = await claim(a);
    await expireLease(task.task_id);
    task = await claim(b); // one loss
    await json(await update(b, task, 'failed', { message: 'crashed', failure_reason: 'crashed' }), 200);
    expect(await taskRow(task.task_id)).toMatchObject({ node_losses: 0, status: 'queued' });
    task = await claim(a);
    await expireLease(task.task_id);
    task = await claim(b); // one loss again, not two

    expect(task.attempt).toBe(2);
    expect(await jobStatus(job.job_id)).toMatchObject({ status: 'running' });
  });

  it('max_node_losses is a validated submit field (POST /submit_job and POST /jobs), 5 unless given, shown in job_status', async () => {
    const plain = await submitOk({ start_frame: 1, end_frame: 1 });
    expect(await jobStatus(plain.job_id)).toMatchObject({ max_node_losses: 5 });
    const given = await submitOk({ start_frame: 1, end_frame: 1, max_node_losses: 12 });
    expect(await jobStatus(given.job_id)).toMatchObject({ max_node_losses: 12 });
    for (const bad of ['0', '101', '2.5', 'many']) {
      await expectError(
        await submitJob({ start_frame: 1, end_frame: 1, max_node_losses: bad }),
        400,
        /max_node_losses must be a (whole number from 1 to 100|number)/,
      );
    }
    const blobJob = { blob_sha256: 'a'.repeat(64), kind: 'blend', start_frame: 1, end_frame: 2 };
    expect(createJobSchema.safeParse({ ...blobJob, max_node_losses: 7 }).success).toBe(true);
    expect(createJobSchema.safeParse({ ...blobJob, max_node_losses: 0 }).success).toBe(false);
  });
});

describe('a node that restarts', () => {
  it('registering with a new boot id hands back what its earlier life held at once: a waiting node takes it within a second, frames uploaded stay', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 3, chunk_size: 3, max_attempts: 1 });
    const restarting = await registerBoot('restarting', BOOT_1);
    const waiting = await registerWorker('waiting');
    const held = await claim(restarting);
    await json(await putFrame(restarting, held, 1, pngBytes(1)), 201);

    // The same life registering again (the master forgot it, a retry) hands nothing back.
    await registerBoot('restarting', BOOT_1, restarting);
    expect((await getJob(waiting)).status).toBe(204);
    expect(await taskRow(held.task_id)).toMatchObject({ lease_id: held.lease_id, status: 'running' });

    // The node waits for work in a long poll; the restarted node registers with a new life.
    const started = Date.now();
    const poll = postJson('/get_job', { worker_id: waiting, wait_ms: 20_000 });
    await scheduler.wait(200);
    await registerBoot('restarting', BOOT_2, restarting);
    const taken = await json<TaskAssignment>(await poll, 200);

    expect(Date.now() - started).toBeLessThan(5_000);
    expect(taken).toMatchObject({ task_id: held.task_id, frames: [2, 3], attempt: 1 });
    expect(await taskRow(held.task_id)).toMatchObject({ attempts: 1, node_losses: 1, worker_id: waiting });
    // The earlier life's lease is gone: its reports are refused.
    await expectError(await update(restarting, held, 'running'), 409, 'is not the current lease');
    await renderAll(waiting, taken);
    expect(await jobStatus(job.job_id)).toMatchObject({ status: 'completed', completed_frames: 3 });
  });

  it('a restart counts towards max_node_losses: a node that restarts on every try of the same frames fails the job', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1, max_node_losses: 2 });
    const node = await registerBoot('crashy', BOOT_1);
    await claim(node);
    await registerBoot('crashy', BOOT_2, node);
    await claim(node);
    await registerBoot('crashy', '33333333-3333-4333-8333-333333333333', node);

    expect((await getJob(node)).status).toBe(204);
    const failed = await jobStatus(job.job_id);
    expect(failed).toMatchObject({ status: 'failed', failure_reason: 'lease_expired' });
    expect(failed.error).toContain('nodes kept disappearing while rendering frames 1-1');
  });
});

describe('a holder that comes back', () => {
  it('renews a lease that ran out while nobody took the task, uploads on it, and completes it', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2, max_attempts: 1 });
    const [back, other] = [await registerWorker('back'), await registerWorker('other')];
    const task = await claim(back);
    await expireLease(task.task_id);

    const renewed = await json<UpdateTaskStatusResponse>(await update(back, task, 'running'), 200);

    expect(renewed).toMatchObject({ status: 'running', abort: false });
    expect(Date.parse(renewed.lease_expires_at!)).toBeGreaterThan(Date.now() + 30_000);
    // Live again: nobody else is given it.
    expect((await getJob(other)).status).toBe(204);
    await expireLease(task.task_id);
    // An upload on a lease past its time is accepted too while the task is still its.
    for (const frame of task.frames) await json(await putFrame(back, task, frame, pngBytes(frame)), 201);
    await json(await update(back, task, 'completed'), 200);
    expect(await jobStatus(job.job_id)).toMatchObject({ status: 'completed', completed_frames: 2 });
    expect(await taskRow(task.task_id)).toMatchObject({ attempts: 1, node_losses: 0 });
  });

  it('gets 409 once another node took the task, and changes nothing', async () => {
    await submitOk({ start_frame: 1, end_frame: 1 });
    const [back, other] = [await registerWorker('back'), await registerWorker('other')];
    const task = await claim(back);
    await expireLease(task.task_id);
    const taken = await claim(other);
    const before = await taskRow(task.task_id);

    await expectError(await update(back, task, 'running'), 409, 'is not the current lease');
    await expectError(await putFrame(back, task, 1, pngBytes('late')), 409, 'is not the current lease');

    expect(await taskRow(task.task_id)).toEqual(before);
    expect(before).toMatchObject({ lease_id: taken.lease_id, worker_id: other });
  });
});

describe('paused jobs', () => {
  it('a lease that runs out on the last attempt while the job is paused does not leave the job stuck below 100% after resume', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2, max_attempts: 1 });
    const [a, b] = [await registerWorker('a'), await registerWorker('b')];
    const task = await claim(a);
    await json(await postJson(`/jobs/${job.job_id}/pause`, {}), 200);
    await expireLease(task.task_id);
    // Another node asks for work while the job is paused: its claim runs the expiry rule.
    expect((await getJob(b)).status).toBe(204);

    await json(await postJson(`/jobs/${job.job_id}/resume`, {}), 200);
    const again = await claim(b);
    expect(again).toMatchObject({ task_id: task.task_id, frames: [1, 2] });
    await renderAll(b, again);

    expect(await jobStatus(job.job_id)).toMatchObject({ status: 'completed', progress: 1, failed_frames: 0 });
  });

  it('a task lost once too often while its job is paused waits for the resume, then fails the job instead of stranding it', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2, max_node_losses: 1 });
    const [a, b] = [await registerWorker('a'), await registerWorker('b')];
    const task = await claim(a);
    await json(await postJson(`/jobs/${job.job_id}/pause`, {}), 200);
    await expireLease(task.task_id);
    expect((await getJob(b)).status).toBe(204);
    expect(await taskRow(task.task_id)).toMatchObject({ status: 'running' });
    expect((await jobStatus(job.job_id)).status).toBe('paused');

    await json(await postJson(`/jobs/${job.job_id}/resume`, {}), 200);
    expect((await getJob(b)).status).toBe(204);

    expect(await jobStatus(job.job_id)).toMatchObject({ status: 'failed', failure_reason: 'lease_expired' });
  });
});

describe('adaptive chunks are bounded', () => {
  it('MAX_CHUNK_FRAMES is read from the Worker vars, 100 unless set', () => {
    expect(readConfig({ ...env, MAX_CHUNK_FRAMES: '25' }).maxChunkFrames).toBe(25);
    expect(readConfig({ ...env, MAX_CHUNK_FRAMES: undefined }).maxChunkFrames).toBe(100);
  });

  it('a node reporting frames rendered in 0 ms does not get the whole job: the frame time counts as 1 s and the chunk is capped', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1_000_000 });
    const worker = await registerWorker();
    const probe = await claim(worker);
    await json(await putFrame(worker, probe, 1, pngBytes(1), { renderMs: 0 }), 201);
    await json(await update(worker, probe, 'completed'), 200);
    expect(await jobRow(job.job_id)).toMatchObject({ frames_timed: 1, frame_time_ms_total: 0 });

    // 2 minutes at (at least) 1 s a frame is 120 frames, over the cap of 100.
    const capped = await claim(worker);
    expect(capped).toMatchObject({ start_frame: 2, end_frame: 101 });
    // The floor alone: a 30 s target at (at least) 1 s a frame.
    const floored = await claimTask(env.DB, { workerId: worker, now: Date.now(), leaseMs: 60_000, targetChunkMs: 30_000, activeNodes: 1 });
    expect(floored).toMatchObject({ outcome: 'claimed', claimed: { start_frame: 102, end_frame: 131 } });
    const small = await claimTask(env.DB, { workerId: worker, now: Date.now(), leaseMs: 60_000, targetChunkMs: 120_000, activeNodes: 1, maxChunkFrames: 7 });
    expect(small).toMatchObject({ outcome: 'claimed', claimed: { start_frame: 132, end_frame: 138 } });
  });
});

describe('a failure report is counted once per lease', () => {
  /** The counters a failure bumps: the node's blocklist entry for the job and its failure count. */
  async function counters(jobId: string, workerId: string) {
    const blocklist = await env.DB.prepare(`SELECT failures FROM job_blocklist WHERE job_id = ? AND worker_id = ?`)
      .bind(jobId, workerId)
      .first<number>('failures');
    const worker = await env.DB.prepare(`SELECT failures FROM workers WHERE id = ?`).bind(workerId).first<number>('failures');
    return { blocklist, worker };
  }

  const input = (workerId: string, task: TaskAssignment) => ({
    taskId: task.task_id,
    workerId,
    leaseId: task.lease_id,
    now: Date.now(),
    message: 'Blender crashed',
    reason: 'crashed',
    logTail: null,
  });

  it('a batch applied twice (committed, then run again) counts the failure once and answers as the first time', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1, max_attempts: 3 });
    const node = await registerWorker();
    const task = await claim(node);
    const twice = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: async (statements: D1PreparedStatement[]) => {
        await env.DB.batch(statements);
        return env.DB.batch(statements);
      },
    } as unknown as D1Database;

    expect(await failTask(twice, input(node, task))).toEqual({ status: 'queued', jobId: job.job_id });

    expect(await counters(job.job_id, node)).toEqual({ blocklist: 1, worker: 1 });
    expect(await taskRow(task.task_id)).toMatchObject({ status: 'queued', attempts: 1, failed_lease: task.lease_id, failure_uncounted: 0 });
  });

  it('the group commit running members again after an error of unknown outcome counts each failure once', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 1, max_attempts: 1 });
    const node = await registerWorker();
    const [one, two] = [await claim(node), await claim(node)];
    let unknownOutcome = true;
    // The first batch of more than one failure (6 statements each) commits, then its answer is lost.
    const flaky = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: async (statements: D1PreparedStatement[]) => {
        const results = await env.DB.batch(statements);
        if (unknownOutcome && statements.length > 6) {
          unknownOutcome = false;
          throw new Error('network connection lost');
        }
        return results;
      },
    } as unknown as D1Database;
    const db = groupCommitting(flaky);
    // The first caller leads alone; the two failures meet in the next group.
    const [, first, second] = await Promise.all([
      batchTogether(flaky, [env.DB.prepare(`SELECT 1 AS n`)]),
      failTask(db, input(node, one)),
      failTask(db, input(node, two)),
    ]);

    expect(unknownOutcome).toBe(false);
    expect([first.status, second.status]).toEqual(['failed', 'failed']);
    expect(await counters(job.job_id, node)).toEqual({ blocklist: 2, worker: 2 });
    const row = await jobRow(job.job_id);
    expect(row).toMatchObject({ status: 'failed' });
  });

  it('a node repeating its failed report (the answer was lost) gets the same answer and counts once', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1, max_attempts: 2 });
    const node = await registerWorker();
    const task = await claim(node);
    const report = { message: 'out of memory', failure_reason: 'out_of_memory' };

    const answers = [await update(node, task, 'failed', report), await update(node, task, 'failed', report)];

    for (const answer of answers) expect(await json<UpdateTaskStatusResponse>(answer, 200)).toMatchObject({ status: 'queued' });
    expect(await counters(job.job_id, node)).toEqual({ blocklist: 1, worker: 1 });
  });
});
