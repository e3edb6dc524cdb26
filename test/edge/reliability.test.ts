/**
 * Never losing a frame, from the master's side: lost claims, dead nodes, late uploads, storage
 * left behind by a restart, warnings and failure reasons on the job, failed jobs and retries.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import type { TaskAssignment } from '../../protocol/schemas.ts';
import { MAX_JOB_WARNINGS } from '../../edge/db/jobs.ts';
import { sweepUnrecordedFrames } from '../../edge/frame-audit.ts';
import { claimTask } from '../../edge/scheduler.ts';
import { wakeWaitingNodes } from '../../edge/work-signal.ts';
import { frameKey } from '../../edge/storage-keys.ts';
import {
  call,
  claim,
  countRows,
  expectError,
  getJob,
  json,
  jobRow,
  pngBytes,
  postJson,
  putFrame,
  registerWorker,
  renderAll,
  sha256,
  submitOk,
  taskRow,
  update,
  uploadFrame,
  expireLease,
  jobStatus,
} from './helpers.ts';

interface StorageReport {
  recorded_frames: number;
  stored_objects: number;
  missing_frames: number[];
  unrecorded_objects: number;
  complete: boolean;
}
const storage = async (jobId: string) => json<StorageReport>(await call(`/jobs/${jobId}/storage`), 200);

/** Polls `check` until it holds: work the master hands to waitUntil finishes after its answer. */
async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await scheduler.wait(20);
  }
}

const CLAIM_ID = '11111111-2222-4333-8444-555555555555';

describe('a claim whose answer was lost', () => {
  it('a retry of get_job with the same claim_id gets the same claim back, without using another attempt', async () => {
    await submitOk({ start_frame: 1, end_frame: 6, chunk_size: 2 });
    const node = await registerWorker('flaky-network');

    const first = await json<TaskAssignment>(await postJson('/get_job', { worker_id: node, claim_id: CLAIM_ID }), 200);
    // The answer never arrived; the node's HTTP client sends the very same request again.
    const retry = await json<TaskAssignment>(await postJson('/get_job', { worker_id: node, claim_id: CLAIM_ID }), 200);

    expect(first.lease_id).toBe(CLAIM_ID);
    expect(retry).toMatchObject({ task_id: first.task_id, lease_id: CLAIM_ID, frames: [1, 2], attempt: 1 });
    expect((await countRows()).tasks).toBe(1);
    // A new request for work (a new claim_id) is new work.
    const next = await json<TaskAssignment>(await postJson('/get_job', { worker_id: node, claim_id: crypto.randomUUID() }), 200);
    expect(next.frames).toEqual([3, 4]);
  });

  it('another node sending the same claim_id does not get that claim, and an id already used is not reused as a lease', async () => {
    await submitOk({ start_frame: 1, end_frame: 4, chunk_size: 2 });
    const owner = await registerWorker('owner');
    const other = await registerWorker('other');
    const mine = await json<TaskAssignment>(await postJson('/get_job', { worker_id: owner, claim_id: CLAIM_ID }), 200);

    const theirs = await json<TaskAssignment>(await postJson('/get_job', { worker_id: other, claim_id: CLAIM_ID }), 200);

    expect(theirs.task_id).not.toBe(mine.task_id);
    expect(theirs.lease_id).not.toBe(CLAIM_ID);
    expect(theirs.frames).toEqual([3, 4]);
    expect(await taskRow(mine.task_id)).toMatchObject({ worker_id: owner, lease_id: CLAIM_ID });
  });

  it('once the claim is over (completed), the same claim_id does not hand it out again', async () => {
    await submitOk({ start_frame: 1, end_frame: 4, chunk_size: 2 });
    const node = await registerWorker();
    const task = await json<TaskAssignment>(await postJson('/get_job', { worker_id: node, claim_id: CLAIM_ID }), 200);
    await renderAll(node, task);

    const again = await json<TaskAssignment>(await postJson('/get_job', { worker_id: node, claim_id: CLAIM_ID }), 200);

    expect(again.task_id).not.toBe(task.task_id);
    expect(again.frames).toEqual([3, 4]);
  });
});

describe('an abandoned long poll', () => {
  it('claims nothing once the same node has sent a newer request for work', async () => {
    const node = await registerWorker('reconnects');
    // Work that is not claimable yet (paused), made claimable below by D1 directly and announced
    // to the waiting polls through the wake-up object, as the cron sweep or another isolate would.
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2 });
    await env.DB.prepare(`UPDATE jobs SET status = 'paused' WHERE id = ?`).bind(job.job_id).run();
    // A lease ago: the long poll's claim marks the node as seen, which shows it started.
    const seenBefore = Date.now() - 61_000;
    await env.DB.prepare(`UPDATE workers SET last_seen_at = ? WHERE id = ?`).bind(seenBefore, node).run();
    // The node's long poll is cut off by the network; the master's side of it waits on.
    const abandoned = postJson('/get_job', { worker_id: node, wait_ms: 5_000, claim_id: crypto.randomUUID() });
    await eventually(
      'the long poll to start',
      async () => (await env.DB.prepare(`SELECT last_seen_at FROM workers WHERE id = ?`).bind(node).first<number>('last_seen_at'))! > seenBefore,
    );
    // The node asks again (no work yet), then work arrives and the waiting polls are woken.
    expect((await postJson('/get_job', { worker_id: node, claim_id: crypto.randomUUID() })).status).toBe(204);
    await env.DB.prepare(`UPDATE jobs SET status = 'queued' WHERE id = ?`).bind(job.job_id).run();
    await wakeWaitingNodes(env);

    expect((await abandoned).status).toBe(204);
    expect((await countRows()).tasks).toBe(0);
    // The node's next request gets the work.
    expect((await claim(node)).job_id).toBe(job.job_id);
  });

  it('one lease id is never given to two tasks, even by claims racing with the same claim_id', async () => {
    await submitOk({ start_frame: 1, end_frame: 4, chunk_size: 2 });
    const node = await registerWorker();
    // Two released tasks wait in the queue, so a claim would re-lease rather than carve.
    for (let i = 0; i < 2; i++) await json(await update(node, await claim(node), 'released'), 200);
    const options = { workerId: node, now: Date.now(), leaseMs: 60_000, targetChunkMs: 120_000, activeNodes: 1, leaseId: CLAIM_ID };

    const first = await claimTask(env.DB, options);
    const second = await claimTask(env.DB, options);

    expect(first).toMatchObject({ outcome: 'claimed', redelivered: false });
    // The second is the same claim found again (a retry whose answer was lost), not a new one.
    expect(second).toMatchObject({ outcome: 'claimed', redelivered: true });
    if (first.outcome !== 'claimed' || second.outcome !== 'claimed') throw new Error('unreachable');
    expect(second.claimed.id).toBe(first.claimed.id);
    expect(await env.DB.prepare(`SELECT COUNT(*) AS n FROM tasks WHERE lease_id = ?`).bind(CLAIM_ID).first('n')).toBe(1);
  });
});

describe('a node that dies mid-task', () => {
  it('loses only the frames it had not uploaded: the next node is given exactly the missing ones', async () => {
    await submitOk({ start_frame: 10, end_frame: 14, chunk_size: 5 });
    const dead = await registerWorker('dead');
    const next = await registerWorker('next');
    const lost = await claim(dead);
    await json(await uploadFrame(dead, lost, 10, pngBytes(10)), 201);
    await json(await putFrame(dead, lost, 12, pngBytes(12)), 201);
    await expireLease(lost.task_id);

    const taken = await claim(next);

    // The node was lost, the render did not fail: no attempt used (lease-expiry.ts).
    expect(taken).toMatchObject({ task_id: lost.task_id, frames: [11, 13, 14], start_frame: 10, end_frame: 14, attempt: 1 });
    // The dead node's frames are kept and counted once.
    const job = await jobStatus(lost.job_id);
    expect(job.completed_frames).toBe(2);
  });

  it('a task whose node died after its last upload is closed when the job completes, never left running', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 4, chunk_size: 2 });
    const dies = await registerWorker('dies');
    const lives = await registerWorker('lives');
    const orphan = await claim(dies);
    const other = await claim(lives);
    for (const frame of orphan.frames) await json(await putFrame(dies, orphan, frame, pngBytes(frame)), 201);
    // `dies` is gone before it could report; `lives` finishes the job.

    await renderAll(lives, other);

    expect(await jobRow(job.job_id)).toMatchObject({ status: 'completed' });
    const { tasks } = await json<{ tasks: { task_id: string; status: string; lease_expires_at: string | null }[] }>(
      await call(`/jobs/${job.job_id}/tasks`),
      200,
    );
    expect(tasks.map((t) => t.status)).toEqual(['completed', 'completed']);
    expect(tasks.find((t) => t.task_id === orphan.task_id)!.lease_expires_at).toBeNull();
    // Had it only been slow: its report is accepted, and its renewal says to stop.
    await json(await update(dies, orphan, 'completed'), 200);
    await expectError(await update(dies, orphan, 'running'), 409, 'is completed, not running');
  });
});

describe('late and repeated uploads', () => {
  it('a retried upload on the same lease overwrites its own object: one frame, one object', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2 });
    const node = await registerWorker();
    const task = await claim(node);
    // The first try was stored in R2 but the master stopped before recording it.
    const bytes = pngBytes(1, 900);
    await env.FILES.put(frameKey(job.job_id, 1, 'png', task.lease_id), bytes);

    await json(await putFrame(node, task, 1, bytes), 201);
    await json(await uploadFrame(node, task, 1, bytes), 201);

    expect(await storage(job.job_id)).toMatchObject({ recorded_frames: 1, stored_objects: 1, missing_frames: [], unrecorded_objects: 0 });
    expect(await jobRow(job.job_id)).toMatchObject({ completed_frames: 1 });
  });

  it('an upload that loses its lease while in flight does not delete the frame the same lease recorded before', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2 });
    const slow = await registerWorker('slow');
    const fresh = await registerWorker('fresh');
    const task = await claim(slow);
    const bytes = pngBytes('frame-1', 1000);
    await json(await putFrame(slow, task, 1, bytes), 201);

    // A retry of the same upload (the answer to the first was lost) stalls half way...
    const { readable, writable } = new FixedLengthStream(bytes.length);
    const writer = writable.getWriter();
    const halfSent = writer.write(bytes.slice(0, 500));
    const retry = call(`/tasks/${task.task_id}/frames/1?ext=png`, {
      method: 'PUT',
      headers: { 'content-length': String(bytes.length), 'x-farm-worker-id': slow, 'x-farm-lease-id': task.lease_id, 'x-farm-sha256': await sha256(bytes) },
      body: readable,
    });
    await halfSent;
    await scheduler.wait(50);
    // ...the lease runs out and another node takes the task (frame 1 is already stored)...
    await expireLease(task.task_id);
    const taken = await claim(fresh);
    expect(taken.frames).toEqual([2]);
    // ...and then the retry completes: refused, and frame 1 is still there.
    await writer.write(bytes.slice(500));
    await writer.close();
    await expectError(await retry, 409, 'the frame was not recorded');

    const served = await call(`/jobs/${job.job_id}/frames/1`);
    expect(served.status).toBe(200);
    expect(await sha256(await served.arrayBuffer())).toBe(await sha256(bytes));
    expect(await storage(job.job_id)).toMatchObject({ recorded_frames: 1, stored_objects: 1, missing_frames: [] });
  });
});

describe('storage left behind by a restart', () => {
  it('GET /jobs/{id}/storage reports an object no row names, and completing the job deletes it', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2 });
    const node = await registerWorker();
    const task = await claim(node);
    // Left by a master stopped between storing a frame and recording it, on a lease since lost.
    const orphanKey = frameKey(job.job_id, 1, 'png', crypto.randomUUID());
    await env.FILES.put(orphanKey, pngBytes('orphan'));
    for (const frame of task.frames) await json(await putFrame(node, task, frame, pngBytes(frame)), 201);
    expect(await storage(job.job_id)).toEqual({
      job_id: job.job_id,
      recorded_frames: 2,
      stored_objects: 3,
      stored_bytes: 900,
      missing_frames: [],
      unrecorded_objects: 1,
      complete: true,
    });

    await json(await update(node, task, 'completed'), 200);

    await eventually('the orphan to be swept', async () => (await env.FILES.head(orphanKey)) === null);
    expect(await storage(job.job_id)).toMatchObject({ recorded_frames: 2, stored_objects: 2, unrecorded_objects: 0, missing_frames: [] });
    expect((await jobStatus(job.job_id)).completed_frames).toBe(2);
  });

  it('the sweep never deletes a recorded frame, and reports a frame whose object is gone as missing', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2 });
    const node = await registerWorker();
    const task = await claim(node);
    for (const frame of task.frames) await json(await putFrame(node, task, frame, pngBytes(frame)), 201);

    expect(await sweepUnrecordedFrames(env.DB, env.FILES, job.job_id)).toBe(0);
    expect(await storage(job.job_id)).toMatchObject({ stored_objects: 2, missing_frames: [] });
    await env.FILES.delete(frameKey(job.job_id, 2, 'png', task.lease_id));
    expect(await storage(job.job_id)).toMatchObject({ recorded_frames: 2, stored_objects: 1, missing_frames: [2] });
  });
});

describe('warnings on a job', () => {
  it('missing files a node reports are listed once on the job, in the order first seen', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 4, chunk_size: 2 });
    const a = await registerWorker('a');
    const b = await registerWorker('b');
    const ta = await claim(a);
    const tb = await claim(b);
    const texture = 'missing image //textures/wood.png: it renders magenta';
    const library = 'missing library //props.blend: what the file links from it is left out of the render';

    await json(await update(a, ta, 'running', { warnings: [texture] }), 200);
    await json(await update(b, tb, 'running', { warnings: [library, texture] }), 200);
    await json(await update(a, ta, 'running', { warnings: [texture, library] }), 200);

    expect((await jobStatus(job.job_id)).warnings).toEqual([texture, library]);
  });

  it('a node whose lease is gone adds no warning, and the list is capped', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2 });
    const old = await registerWorker('old');
    const lost = await claim(old);
    await expireLease(lost.task_id);
    const now = await registerWorker('now');
    const held = await claim(now);

    await expectError(await update(old, lost, 'running', { warnings: ['from a lost lease'] }), 409, 'is not the current lease');
    expect((await jobStatus(job.job_id)).warnings).toEqual([]);

    for (let i = 0; i < 6; i++) {
      const warnings = Array.from({ length: 50 }, (_, j) => `missing image //tex/${i * 50 + j}.png: it renders magenta`);
      await json(await update(now, held, 'running', { warnings }), 200);
    }
    const listed = (await jobStatus(job.job_id)).warnings;
    expect(listed).toHaveLength(MAX_JOB_WARNINGS);
    expect(listed[0]).toContain('//tex/0.png');
    expect(listed.at(-1)).toContain(`//tex/${MAX_JOB_WARNINGS - 1}.png`);
  });

  it('warnings sent with completed and failed reports are kept too', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 1, max_attempts: 1 });
    const node = await registerWorker();
    const first = await claim(node);
    await json(await putFrame(node, first, 1, pngBytes(1)), 201);
    await json(await update(node, first, 'completed', { warnings: ['missing library //a.blend: left out'] }), 200);
    const second = await claim(node);
    await json(await update(node, second, 'failed', { message: 'boom', failure_reason: 'crashed', warnings: ['missing file //b.png: magenta'] }), 200);

    expect((await jobStatus(job.job_id)).warnings).toEqual(['missing library //a.blend: left out', 'missing file //b.png: magenta']);
  });
});

describe('failed jobs', () => {
  it('job_status says why in words and as a classified failure_reason, with a link to the log', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1, max_attempts: 1 });
    const node = await registerWorker();
    const task = await claim(node);
    expect((await jobStatus(job.job_id)).failure_reason).toBeNull();
    const message = `corrupt .blend: Blender says "Failed to read blend file '/w/x.blend': Missing DNA block" (exit 1); upload the file again`;

    await json(await update(node, task, 'failed', { message, failure_reason: 'corrupt_file', log_tail: 'Missing DNA block' }), 200);

    const failed = await jobStatus(job.job_id);
    expect(failed).toMatchObject({ status: 'failed', failure_reason: 'corrupt_file', failed_frames: 1 });
    expect(failed.error).toContain('Missing DNA block');
    expect(failed.error).toContain(`(log: /jobs/${job.job_id}/tasks/${task.task_id}/log)`);
  });

  it('a job whose lease ran out on the last node loss allowed fails with failure_reason lease_expired', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1, max_node_losses: 1 });
    const node = await registerWorker();
    const task = await claim(node);
    await expireLease(task.task_id);
    expect((await getJob(node)).status).toBe(204);
    expect(await jobStatus(job.job_id)).toMatchObject({ status: 'failed', failure_reason: 'lease_expired' });
  });

  it('without max_attempts a task is tried 3 times, each failure counted, before the job fails', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1 });
    const nodes = [await registerWorker('n1'), await registerWorker('n2'), await registerWorker('n3')];
    for (const [i, node] of nodes.entries()) {
      const task = await claim(node);
      expect(task.attempt).toBe(i + 1);
      expect((await jobStatus(job.job_id)).status).toBe('running');
      await json(await update(node, task, 'failed', { message: 'Blender crashed with SIGSEGV', failure_reason: 'crashed' }), 200);
    }
    expect(await jobStatus(job.job_id)).toMatchObject({ status: 'failed', max_attempts: 3, failure_reason: 'crashed' });
  });

  it('the frames rendered before the job failed stay listed and downloadable', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 4, chunk_size: 2, max_attempts: 1 });
    const node = await registerWorker();
    const good = await claim(node);
    await renderAll(node, good);
    const bad = await claim(node);
    await json(await update(node, bad, 'failed', { message: 'out of memory', failure_reason: 'out_of_memory' }), 200);
    expect((await jobStatus(job.job_id)).status).toBe('failed');

    const { frames } = await json<{ frames: { frame: number }[] }>(await call(`/jobs/${job.job_id}/frames`), 200);
    expect(frames.map((f) => f.frame)).toEqual([1, 2]);
    const one = await call(`/jobs/${job.job_id}/frames/1`);
    expect(await sha256(await one.arrayBuffer())).toBe(await sha256(pngBytes(1)));
    expect((await call(`/jobs/${job.job_id}/frames.zip`)).status).toBe(200);
  });

  it('requeue_failed also brings back a task left running when its job failed, so the job can complete', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 4, chunk_size: 2, max_attempts: 1 });
    const a = await registerWorker('a');
    const b = await registerWorker('b');
    const failing = await claim(a);
    const aborted = await claim(b);
    await json(await update(a, failing, 'failed', { message: 'no camera', failure_reason: 'no_camera' }), 200);
    // b was told to stop (abort) and did, without a report: its lease runs out.
    expect((await json<{ abort: boolean }>(await update(b, aborted, 'running'), 200)).abort).toBe(true);
    await expireLease(aborted.task_id);

    const requeued = await json<{ requeued_tasks: number; status: string }>(await postJson(`/jobs/${job.job_id}/requeue_failed`, {}), 200);

    expect(requeued).toMatchObject({ requeued_tasks: 2, status: 'running' });
    for (let i = 0; i < 2; i++) await renderAll(a, await claim(a));
    expect(await jobStatus(job.job_id)).toMatchObject({ status: 'completed', completed_frames: 4, error: null, failure_reason: null });
  });
});
