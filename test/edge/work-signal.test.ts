/**
 * Waiting is not work: a long-polling `get_job` waits on the WorkSignal Durable Object, is woken
 * by every change that makes work claimable, and costs no D1 write (nor any D1 query) while it
 * waits. There is no in-isolate wake-up any more, so every wake-up below went through the object,
 * as one from another isolate would.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import type { TaskAssignment } from '../../protocol/schemas.ts';
import { claimTask } from '../../edge/scheduler.ts';
import { wakeWaitingNodes } from '../../edge/work-signal.ts';
import { call, claim, json, postJson, registerWorker, submitOk, update } from './helpers.ts';

/** Far longer than any wake-up takes: a poll that answers well before it was woken, not timed out. */
const WAIT_MS = 8_000;

/** Starts a long poll and resolves once it has made its first (empty) claim and waits. */
async function waitingPoll(workerId: string, waitMs = WAIT_MS): Promise<{ answer: Promise<Response>; startedAt: number }> {
  const startedAt = Date.now();
  const answer = postJson('/get_job', { worker_id: workerId, wait_ms: waitMs, claim_id: crypto.randomUUID() });
  // The poll has claimed and is waiting once it holds a call on the object; there is no hook for
  // that, and a short pause is enough here (the poll's claim takes a few milliseconds).
  await scheduler.wait(300);
  return { answer, startedAt };
}

/**
 * The database as `claimTask` sees it, counting the rows its batches write as D1 bills them
 * (`meta.rows_written`). (SQLite's total_changes() is no use here: local D1 bumps it on every call.)
 */
function countingWrites(db: D1Database): { db: D1Database; rowsWritten: () => number } {
  let written = 0;
  const counting = new Proxy(db, {
    get(target, property) {
      if (property === 'batch') {
        return async (statements: D1PreparedStatement[]) => {
          const results = await target.batch(statements);
          for (const r of results) written += r.meta.rows_written ?? 0;
          return results;
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { db: counting, rowsWritten: () => written };
}

/** Every row of the tables a poll could write, to compare before and after. */
async function snapshot(): Promise<unknown[]> {
  const tables = ['workers', 'jobs', 'tasks', 'frames', 'job_blocklist', 'rate_limits'];
  const results = await env.DB.batch(tables.map((t) => env.DB.prepare(`SELECT * FROM ${t} ORDER BY rowid`)));
  return results.map((r) => r.results);
}

/** A job inserted straight into D1, as if another isolate had taken the submission: nobody is woken. */
async function insertJobSilently(blendFile: string, frame: number): Promise<string> {
  const jobId = crypto.randomUUID();
  await env.DB.prepare(
    `INSERT INTO jobs (id, name, status, priority, start_frame, end_frame, next_frame, blend_file, blend_sha256, blend_size,
       created_at, updated_at) VALUES (?1, 'silent', 'queued', 50, ?2, ?2, ?2, ?3, ?4, 10, ?5, ?5)`,
  )
    .bind(jobId, frame, blendFile, blendFile.slice(0, 64), Date.now())
    .run();
  return jobId;
}

/** Asserts a poll was answered with work soon after the wake-up, long before its wait_ms ran out. */
async function expectPickedUp(poll: { answer: Promise<Response>; startedAt: number }, jobId: string): Promise<TaskAssignment> {
  const res = await poll.answer;
  const text = await res.text();
  expect(res.status, text).toBe(200);
  const task = JSON.parse(text) as TaskAssignment;
  expect(task.job_id).toBe(jobId);
  expect(Date.now() - poll.startedAt).toBeLessThan(WAIT_MS / 2);
  return task;
}

describe('the WorkSignal Durable Object', () => {
  it('a notification between reading the generation and waiting makes the wait return at once', async () => {
    const stub = env.WORK_SIGNAL.get(env.WORK_SIGNAL.idFromName('global'));
    const before = await stub.generation();
    await stub.notify();
    const started = Date.now();
    const after = await stub.wait(before, 5_000);
    expect(after).not.toBe(before);
    expect(Date.now() - started).toBeLessThan(1_000);
    // Waiting from the current generation lasts until the time runs out.
    expect(await stub.wait(after, 300)).toBe(after);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });
});

describe('a waiting get_job is woken through the Durable Object', () => {
  it('by a notification from elsewhere (the cron sweep, another isolate): work that appeared silently is picked up at once', async () => {
    const seeded = await submitOk({ start_frame: 1, end_frame: 1 });
    await env.DB.prepare(`UPDATE jobs SET status = 'completed'`).run();
    const node = await registerWorker();
    const poll = await waitingPoll(node);
    const jobId = await insertJobSilently(seeded.blend_file, 7);
    // Without a notification the poll would wait out its 8 s: it re-checks nothing by itself.
    await scheduler.wait(500);

    await wakeWaitingNodes(env);

    expect((await expectPickedUp(poll, jobId)).frames).toEqual([7]);
  });

  it('without a notification, silent work waits for the next poll: no periodic D1 re-check', async () => {
    const seeded = await submitOk({ start_frame: 1, end_frame: 1 });
    await env.DB.prepare(`UPDATE jobs SET status = 'completed'`).run();
    const node = await registerWorker();
    const poll = await waitingPoll(node, 2_000);
    const jobId = await insertJobSilently(seeded.blend_file, 3);

    expect((await poll.answer).status).toBe(204);
    expect(Date.now() - poll.startedAt).toBeGreaterThanOrEqual(1_900);
    // The node's next poll finds it.
    expect((await claim(node)).job_id).toBe(jobId);
  });

  it('by a submission', async () => {
    const node = await registerWorker();
    const poll = await waitingPoll(node);
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2 });
    expect((await expectPickedUp(poll, job.job_id)).frames).toEqual([1, 2]);
  });

  it('by a resumed job', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1 });
    await json(await call(`/jobs/${job.job_id}/pause`, { method: 'POST' }), 200);
    const node = await registerWorker();
    const poll = await waitingPoll(node);
    await json(await call(`/jobs/${job.job_id}/resume`, { method: 'POST' }), 200);
    await expectPickedUp(poll, job.job_id);
  });

  it('by a priority change (which also wakes nodes for work that appeared silently)', async () => {
    const seeded = await submitOk({ start_frame: 1, end_frame: 1 });
    await env.DB.prepare(`UPDATE jobs SET status = 'completed'`).run();
    const node = await registerWorker();
    const poll = await waitingPoll(node);
    const jobId = await insertJobSilently(seeded.blend_file, 4);
    await scheduler.wait(300);
    await json(await call(`/jobs/${jobId}`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ priority: 90 }) }), 200);
    await expectPickedUp(poll, jobId);
  });

  it('by a requeue of failed tasks', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1, max_attempts: 1 });
    const node = await registerWorker();
    const task = await claim(node);
    await json(await update(node, task, 'failed', { message: 'boom' }), 200);
    const poll = await waitingPoll(node);
    await json(await call(`/jobs/${job.job_id}/requeue_failed`, { method: 'POST' }), 200);
    expect((await expectPickedUp(poll, job.job_id)).task_id).toBe(task.task_id);
  });

  it('by enabling the node: a disabled node waits out its poll instead of asking again at once', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1 });
    const node = await registerWorker();
    await json(await call(`/workers/${node}/disable`, { method: 'POST' }), 200);
    // Disabled: no work, and no answer before wait_ms (a node asking every 250 ms would hammer D1).
    const idle = await waitingPoll(node, 1_000);
    expect((await idle.answer).status).toBe(204);
    expect(Date.now() - idle.startedAt).toBeGreaterThanOrEqual(900);

    const poll = await waitingPoll(node);
    await json(await call(`/workers/${node}/enable`, { method: 'POST' }), 200);
    await expectPickedUp(poll, job.job_id);
  });

  it('many polls woken at once: each frame is handed out once, and the polls left without work wait on', async () => {
    const nodes = await Promise.all(Array.from({ length: 12 }, (_, i) => registerWorker(`herd-${i}`)));
    const startedAt = Date.now();
    const answers = nodes.map(async (node) => {
      const res = await postJson('/get_job', { worker_id: node, wait_ms: 3_000, claim_id: crypto.randomUUID() });
      return { res, afterMs: Date.now() - startedAt };
    });
    await scheduler.wait(500);
    const job = await submitOk({ start_frame: 1, end_frame: 5, chunk_size: 1 });

    const responses = await Promise.all(answers);
    const tasks: TaskAssignment[] = [];
    for (const { res, afterMs } of responses) {
      if (res.status === 200) {
        tasks.push(await res.json());
        // Woken by the submission, not by the end of the wait.
        expect(afterMs).toBeLessThan(2_000);
      } else expect(res.status).toBe(204);
    }
    expect(tasks).toHaveLength(5);
    expect(tasks.map((t) => t.frames[0]).sort()).toEqual([1, 2, 3, 4, 5]);
    expect(new Set(tasks.map((t) => t.lease_id)).size).toBe(5);
    expect(new Set(tasks.map((t) => t.job_id))).toEqual(new Set([job.job_id]));
    expect(await env.DB.prepare(`SELECT COUNT(*) AS n FROM tasks`).first('n')).toBe(5);
    // The seven without work answered when their wait ran out, not at the wake-up.
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(2_900);
  });

  it('a poll superseded by a newer one from the same node stops waiting at once and claims nothing', async () => {
    const node = await registerWorker();
    const old = await waitingPoll(node);
    const newer = await waitingPoll(node, 500);
    expect((await old.answer).status).toBe(204);
    expect(Date.now() - old.startedAt).toBeLessThan(WAIT_MS / 2);
    expect((await newer.answer).status).toBe(204);
  });
});

describe('what waiting costs D1', () => {
  it('idle long polls change nothing in D1 within a lease of the node being seen', async () => {
    await registerWorker('idle-a');
    await registerWorker('idle-b');
    const nodes = (await env.DB.prepare(`SELECT id FROM workers`).all<{ id: string }>()).results.map((r) => r.id);
    const before = await snapshot();

    await Promise.all(
      nodes.map(async (node) => {
        for (let i = 0; i < 3; i++) expect((await postJson('/get_job', { worker_id: node, wait_ms: 400 })).status).toBe(204);
      }),
    );

    // Not even last_seen_at moved.
    expect(await snapshot()).toEqual(before);
  });

  it('an empty claim writes no row; it marks the node as seen only once its last_seen_at is a lease old', async () => {
    const node = await registerWorker();
    const { db, rowsWritten } = countingWrites(env.DB);
    const options = { workerId: node, leaseMs: 60_000, targetChunkMs: 120_000 };

    for (let i = 0; i < 3; i++) expect(await claimTask(db, { ...options, now: Date.now() })).toMatchObject({ outcome: 'none' });
    expect(rowsWritten()).toBe(0);

    // Still fresh just inside a lease: no write.
    await env.DB.prepare(`UPDATE workers SET last_seen_at = ?`)
      .bind(Date.now() - 55_000)
      .run();
    expect(await claimTask(db, { ...options, now: Date.now() })).toMatchObject({ outcome: 'none' });
    expect(rowsWritten()).toBe(0);
    const stale = Date.now() - 61_000;
    await env.DB.prepare(`UPDATE workers SET last_seen_at = ?`).bind(stale).run();
    expect(await claimTask(db, { ...options, now: Date.now() })).toMatchObject({ outcome: 'none' });
    expect(rowsWritten()).toBe(1);
    expect(await env.DB.prepare(`SELECT last_seen_at FROM workers WHERE id = ?`).bind(node).first<number>('last_seen_at')).toBeGreaterThan(stale);
    for (let i = 0; i < 3; i++) expect(await claimTask(db, { ...options, now: Date.now() })).toMatchObject({ outcome: 'none' });
    expect(rowsWritten()).toBe(1);

    // An unknown node and a disabled one are still told apart, without a write.
    expect(await claimTask(db, { ...options, workerId: crypto.randomUUID(), now: Date.now() })).toMatchObject({ outcome: 'unknown_worker' });
    await env.DB.prepare(`UPDATE workers SET enabled = 0`).run();
    expect(await claimTask(db, { ...options, now: Date.now() })).toMatchObject({ outcome: 'disabled' });
    expect(rowsWritten()).toBe(1);
  });

  it('a lease renewal marks the node as seen only when its last_seen_at is stale', async () => {
    await submitOk({ start_frame: 1, end_frame: 1 });
    const node = await registerWorker();
    const task = await claim(node);
    const seenAt = () => env.DB.prepare(`SELECT last_seen_at FROM workers WHERE id = ?`).bind(node).first<number>('last_seen_at');
    const fresh = await seenAt();
    await json(await update(node, task, 'running'), 200);
    expect(await seenAt()).toBe(fresh);
    await env.DB.prepare(`UPDATE workers SET last_seen_at = ?`)
      .bind(Date.now() - 61_000)
      .run();
    await json(await update(node, task, 'running'), 200);
    expect(await seenAt()).toBeGreaterThan(Date.now() - 5_000);
  });
});
