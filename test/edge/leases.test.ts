/** Leases fence every report about a task: renewal, expiry and reclaim, and stale or foreign leases. */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import type { TaskAssignment, UpdateTaskStatusResponse } from '../../protocol/schemas.ts';
import {
  call,
  claim,
  countRows,
  expectError,
  getJob,
  json,
  jobRow,
  pngBytes,
  putFrame,
  registerWorker,
  sha256,
  submitOk,
  taskRow,
  update,
  uploadFrame,
  expireLease,
} from './helpers.ts';

describe('lease renewal', () => {
  it('a running update renews the lease: lease_expires_at moves later and the progress is recorded', async () => {
    await submitOk({ start_frame: 1, end_frame: 3, chunk_size: 3 });
    const worker = await registerWorker();
    const task = await claim(worker);
    // Pretend the lease is nearly over, so any renewal is visibly later.
    const nearlyOver = Date.now() + 1_000;
    await env.DB.prepare(`UPDATE tasks SET lease_expires_at = ? WHERE id = ?`).bind(nearlyOver, task.task_id).run();

    const res = await update(worker, task, 'running', { current_frame: 2, message: 'Fra:2 Mem:120M', peak_mem_mb: 512.4 });
    const body = await json<UpdateTaskStatusResponse>(res, 200);

    expect(body).toMatchObject({ task_id: task.task_id, status: 'running', abort: false });
    const renewed = Date.parse(body.lease_expires_at!);
    expect(renewed).toBeGreaterThan(nearlyOver + 50_000);
    expect(await taskRow(task.task_id)).toMatchObject({
      lease_expires_at: renewed,
      current_frame: 2,
      message: 'Fra:2 Mem:120M',
      peak_mem_mb: 512,
      status: 'running',
    });
  });
});

describe('lease expiry', () => {
  it('a node that stops renewing loses its frames to another node, and every later report on its old lease gets 409 and changes nothing', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 4, chunk_size: 2 });
    const dead = await registerWorker('dead');
    const alive = await registerWorker('alive');
    const lost = await claim(dead);
    await expireLease(lost.task_id);

    const taken = await claim(alive);

    expect(taken.task_id).toBe(lost.task_id);
    expect(taken.frames).toEqual(lost.frames);
    expect(taken.lease_id).not.toBe(lost.lease_id);
    // A node lost is not an attempt used: counted as a node loss instead (lease-expiry.ts).
    expect(taken.attempt).toBe(1);
    const rowAfterReclaim = await taskRow(lost.task_id);
    expect(rowAfterReclaim).toMatchObject({ worker_id: alive, lease_id: taken.lease_id, status: 'running' });
    const countsAfterReclaim = await countRows();
    const jobAfterReclaim = await jobRow(job.job_id);

    await expectError(await update(dead, lost, 'running'), 409, 'is not the current lease');
    await expectError(await uploadFrame(dead, lost, lost.frames[0]!, pngBytes('stale')), 409, 'is not the current lease');
    await expectError(await putFrame(dead, lost, lost.frames[1]!, pngBytes('stale-raw')), 409, 'is not the current lease');
    await expectError(await update(dead, lost, 'completed'), 409, 'is not the current lease');
    await expectError(await update(dead, lost, 'failed', { message: 'boom' }), 409, 'is not the current lease');
    await expectError(await update(dead, lost, 'released'), 409, 'is not the current lease');

    // Nothing the dead node sent changed the task, the job, the frames or R2.
    const { updated_at: _a, ...rowNow } = (await taskRow(lost.task_id))!;
    const { updated_at: _b, ...rowThen } = rowAfterReclaim!;
    expect(rowNow).toEqual(rowThen);
    expect(await countRows()).toEqual(countsAfterReclaim);
    expect(await jobRow(job.job_id)).toEqual(jobAfterReclaim);

    // The node that holds the lease now finishes the task normally.
    for (const frame of taken.frames) await json(await uploadFrame(alive, taken, frame, pngBytes(frame)), 201);
    await json(await update(alive, taken, 'completed'), 200);
    expect(await taskRow(taken.task_id)).toMatchObject({ status: 'completed', worker_id: alive });
  });

  it('an expired lease that nobody reclaimed yet is not handed out twice: the next claim re-leases it once', async () => {
    await submitOk({ start_frame: 1, end_frame: 1 });
    const [a, b, c] = [await registerWorker('a'), await registerWorker('b'), await registerWorker('c')];
    const first = await claim(a);
    await expireLease(first.task_id);

    const answers = await Promise.all([getJob(b), getJob(c)]);

    expect(answers.map((r) => r.status).sort()).toEqual([200, 204]);
    const winner = (await answers.find((r) => r.status === 200)!.json()) as TaskAssignment;
    expect(winner).toMatchObject({ task_id: first.task_id, frames: [1], attempt: 1 });
    expect(await taskRow(first.task_id)).toMatchObject({ node_losses: 1 });
  });
});

describe('a lease that runs out on the last node loss allowed (max_node_losses)', () => {
  it('fails the task and its job instead of handing the frames out again', async () => {
    const job = await submitOk({ start_frame: 7, end_frame: 8, chunk_size: 2, max_node_losses: 1 });
    const dead = await registerWorker('dead');
    const other = await registerWorker('other');
    const task = await claim(dead);
    await expireLease(task.task_id);

    const res = await getJob(other);

    expect(res.status).toBe(204);
    expect(await taskRow(task.task_id)).toMatchObject({ status: 'failed', failure_reason: 'lease_expired' });
    const row = await jobRow(job.job_id);
    expect(row).toMatchObject({ status: 'failed' });
    expect(row!.error).toContain('nodes kept disappearing while rendering frames 7-8');
  });
});

describe('a lease lost during an upload', () => {
  it('a node whose lease ends while its frame is still uploading gets 409 and does not overwrite the frame the new holder stored', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1 });
    const slow = await registerWorker('slow');
    const fresh = await registerWorker('fresh');
    const stale = await claim(slow);
    const staleBytes = pngBytes('stale', 1000);

    // The slow node's upload is accepted (its lease is valid) and then stalls half way.
    const { readable, writable } = new FixedLengthStream(staleBytes.length);
    const writer = writable.getWriter();
    const halfSent = writer.write(staleBytes.slice(0, 500));
    const staleUpload = call(`/tasks/${stale.task_id}/frames/1?ext=png`, {
      method: 'PUT',
      headers: {
        'content-length': String(staleBytes.length),
        'x-farm-worker-id': slow,
        'x-farm-lease-id': stale.lease_id,
        'x-farm-sha256': await sha256(staleBytes),
      },
      body: readable,
    });
    await halfSent;
    await scheduler.wait(50);

    // Meanwhile its lease runs out, another node takes the task and stores frame 1.
    await expireLease(stale.task_id);
    const taken = await claim(fresh);
    const good = pngBytes('good', 800);
    await json(await putFrame(fresh, taken, 1, good), 201);

    // Now the stalled upload finishes.
    await writer.write(staleBytes.slice(500));
    await writer.close();
    await expectError(await staleUpload, 409, 'the frame was not recorded');

    const served = await call(`/jobs/${job.job_id}/frames/1`);
    expect(served.headers.get('x-farm-sha256')).toBe(await sha256(good));
    expect(await sha256(await served.arrayBuffer())).toBe(await sha256(good));
    expect(await countRows()).toMatchObject({ frames: 1, r2_objects: 2 }); // the .blend and the good frame
  });
});

describe('foreign leases', () => {
  it("a node reporting with another node's lease_id gets 409 and the task is left exactly as it was", async () => {
    await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 1 });
    const owner = await registerWorker('owner');
    const intruder = await registerWorker('intruder');
    const task = await claim(owner);
    const before = await taskRow(task.task_id);
    const counts = await countRows();

    for (const status of ['running', 'completed', 'failed', 'released'] as const) {
      await expectError(await update(intruder, task, status, { message: 'not mine' }), 409, `lease ${task.lease_id} is not the current lease`);
    }
    await expectError(await uploadFrame(intruder, task, 1, pngBytes(1)), 409, 'is not the current lease');

    expect(await taskRow(task.task_id)).toEqual(before);
    expect(await countRows()).toEqual(counts);
  });

  it('a lease_id from a different task of the same node is refused 409 for this task', async () => {
    await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 1 });
    const worker = await registerWorker();
    const one = await claim(worker);
    const two = await claim(worker);
    const before = await taskRow(one.task_id);

    await expectError(await update(worker, { task_id: one.task_id, lease_id: two.lease_id }, 'completed'), 409, 'is not the current lease');

    expect(await taskRow(one.task_id)).toEqual(before);
  });
});
