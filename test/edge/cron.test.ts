/**
 * The master's scheduled work (edge/cron.ts): what each sweep removes or moves on, what it must
 * leave alone, and that a deleted job with more files than one run may touch is removed over
 * several runs, resuming after a run that died. Time is moved by passing `now` to a run (R2 dates
 * objects by the real clock, so "old" means old relative to that `now`).
 */
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import type { DeleteJobResponse } from '../../protocol/api.ts';
import type { UploadState } from '../../protocol/schemas.ts';
import { runScheduledWork } from '../../edge/cron.ts';
import worker from '../../edge/index.ts';
import type { Env } from '../../edge/env.ts';
import { sweepExpiredLeases } from '../../edge/lease-expiry.ts';
import {
  blendBytes,
  call,
  claim,
  expectError,
  json,
  jobRow,
  pngBytes,
  postJson,
  putFrame,
  registerWorker,
  sha256,
  submitOk,
  taskRow,
  expireLease,
} from './helpers.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

async function keysUnder(prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await env.FILES.list({ prefix, ...(cursor ? { cursor } : {}) });
    keys.push(...page.objects.map((o) => o.key));
    if (!page.truncated) return keys;
    cursor = page.cursor;
  }
}

/** Where the input of a job (its blend_file, `<sha256>.blend`) is stored, by its blobs row. */
async function inputKey(blendFile: string): Promise<string> {
  const key = await env.DB.prepare(`SELECT r2_key FROM blobs WHERE sha256 = ?`).bind(blendFile.split('.')[0]).first<string>('r2_key');
  expect(key).toBeTruthy();
  return key!;
}

describe('expired leases', () => {
  it('a lease that ran out on the last node loss allowed fails the task and its job when the cron fires, with no node asking for work', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2, max_node_losses: 1 });
    const node = await registerWorker();
    const task = await claim(node);
    await expireLease(task.task_id);

    // Through the Worker's own scheduled handler, as the Cron Trigger calls it.
    const ctx = createExecutionContext();
    worker.scheduled(createScheduledController({ scheduledTime: Date.now(), cron: '* * * * *' }), env, ctx);
    await waitOnExecutionContext(ctx);

    expect(await taskRow(task.task_id)).toMatchObject({ status: 'failed', failure_reason: 'lease_expired' });
    const row = await jobRow(job.job_id);
    expect(row).toMatchObject({ status: 'failed' });
    expect(row!.error).toContain('nodes kept disappearing while rendering frames 1-2');
  });

  it('a lease that ran out with node losses left leaves the task claimable (attempts unchanged) and wakes the waiting nodes once', async () => {
    await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2, max_attempts: 1 });
    const first = await registerWorker('first');
    const task = await claim(first);
    await expireLease(task.task_id);
    const now = Date.now();

    expect(await sweepExpiredLeases(env, now)).toEqual({ jobsEnded: 0, tasksFailed: 0, woke: true });
    expect(await taskRow(task.task_id)).toMatchObject({ status: 'running', attempts: 1 });
    // Runs after the lookback wake nobody again for the same lease.
    expect((await sweepExpiredLeases(env, now + 3 * 60_000)).woke).toBe(false);

    const second = await registerWorker('second');
    const again = await claim(second);
    expect(again.task_id).toBe(task.task_id);
    // A node lost, not an attempt used (lease-expiry.ts): the last attempt is not spent.
    expect(again.attempt).toBe(1);
    expect(await taskRow(task.task_id)).toMatchObject({ attempts: 1, node_losses: 1 });
  });

  it('a live lease is left alone and wakes nobody', async () => {
    await submitOk({ start_frame: 1, end_frame: 1 });
    const task = await claim(await registerWorker());
    expect(await sweepExpiredLeases(env, Date.now())).toEqual({ jobsEnded: 0, tasksFailed: 0, woke: false });
    expect(await taskRow(task.task_id)).toMatchObject({ status: 'running' });
  });
});

describe('stale chunked uploads', () => {
  async function startUpload(bytes: Uint8Array): Promise<{ sha: string; state: UploadState }> {
    const sha = await sha256(bytes);
    const state = await json<UploadState>(await postJson(`/blobs/${sha}/uploads`, { size: bytes.length }), 201);
    return { sha, state };
  }

  it('an upload that received no part for STALE_UPLOAD_HOURS is aborted in R2 and forgotten; a recent one is kept', async () => {
    const staleBytes = blendBytes(100, 'stale');
    const stale = await startUpload(staleBytes);
    const fresh = await startUpload(blendBytes(100, 'fresh'));
    const staleRow = await env.DB.prepare(`SELECT r2_key, r2_upload_id FROM blob_uploads WHERE id = ?`)
      .bind(stale.state.upload_id)
      .first<{ r2_key: string; r2_upload_id: string }>();
    const partPath = `/blobs/${stale.sha}/uploads/${stale.state.upload_id}/parts/1`;
    const sendPart = () => call(partPath, { method: 'PUT', headers: { 'content-length': '100' }, body: staleBytes });
    await json(await sendPart(), 200);
    await env.DB.prepare(`UPDATE blob_uploads SET updated_at = ? WHERE id = ?`)
      .bind(Date.now() - 25 * HOUR, stale.state.upload_id)
      .run();

    await runScheduledWork(env, Date.now());

    const left = await env.DB.prepare(`SELECT id FROM blob_uploads`).all<{ id: string }>();
    expect(left.results.map((r) => r.id)).toEqual([fresh.state.upload_id]);
    expect((await env.DB.prepare(`SELECT COUNT(*) AS n FROM blob_upload_parts`).first<{ n: number }>())!.n).toBe(0);
    await expectError(await sendPart(), 404, 'start it again');
    // R2 dropped the parts: the upload can no longer be completed.
    const multipart = env.FILES.resumeMultipartUpload(staleRow!.r2_key, staleRow!.r2_upload_id);
    await expect(multipart.uploadPart(1, staleBytes)).rejects.toThrow();
  });
});

describe('objects no row names', () => {
  it('an old object no row names is deleted, while a fresh one, a recorded frame, an input and an unknown key are kept; passes are spaced', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1 });
    const node = await registerWorker();
    const task = await claim(node);
    await json(await putFrame(node, task, 1, pngBytes(1)), 201);
    const orphanFrame = `renders/${job.job_id}/lost-lease/frame_000001.png`;
    const orphanBlob = `blobs/${'a'.repeat(64)}/lost-upload`;
    const input = await inputKey(job.blend_file);
    const orphanLog = `logs/${job.job_id}/no-such-task-1.log`;
    const unknown = 'notes/readme.txt';
    for (const key of [orphanFrame, orphanBlob, orphanLog, unknown]) await env.FILES.put(key, 'x');
    await new Promise((resolve) => setTimeout(resolve, 20));
    const fresh = `renders/${job.job_id}/in-flight/frame_000001.png`;
    const freshObject = await env.FILES.put(fresh, 'x');
    const graceMs = 60 * 60_000;
    // The moment the fresh object is just inside its grace period and the others are past theirs.
    const now = freshObject!.uploaded.getTime() + graceMs - 1;

    await runScheduledWork(env, now);

    const all = await keysUnder('');
    for (const key of [orphanFrame, orphanBlob, orphanLog]) expect(all).not.toContain(key);
    const recorded = await env.DB.prepare(`SELECT r2_key FROM frames WHERE job_id = ?`).bind(job.job_id).first<string>('r2_key');
    expect(all).toEqual(expect.arrayContaining([fresh, recorded!, unknown, input]));

    // That pass is over: the next starts ORPHAN_SWEEP_HOURS after it.
    const later = `renders/${job.job_id}/another-lost-lease/frame_000001.png`;
    await env.FILES.put(later, 'x');
    await runScheduledWork(env, now + 2 * HOUR);
    expect(await keysUnder(later)).toEqual([later]);
    await runScheduledWork(env, now + 25 * HOUR);
    expect(await keysUnder(later)).toEqual([]);
    // Its grace is over too by then; what rows name is still kept.
    expect(await keysUnder(fresh)).toEqual([]);
    expect(await keysUnder(recorded!)).toEqual([recorded]);
  });
});

describe('inputs no job uses', () => {
  it('an input is deleted INPUT_RETENTION_DAYS after its last job was deleted, and one a job uses is kept', async () => {
    const used = await submitOk({ start_frame: 1, end_frame: 1, name: 'kept' }, blendBytes(4096, 'used'));
    const gone = await submitOk({ start_frame: 1, end_frame: 1, name: 'deleted' }, blendBytes(4096, 'unused'));
    const usedKey = await inputKey(used.blend_file);
    const goneKey = await inputKey(gone.blend_file);
    await json<DeleteJobResponse>(await call(`/jobs/${gone.job_id}`, { method: 'DELETE' }), 200);
    // Long-stored inputs: only the time since the last job went counts for the deleted job's.
    await env.DB.prepare(`UPDATE blobs SET created_at = ?`)
      .bind(Date.now() - 30 * DAY)
      .run();
    const now = Date.now();

    await runScheduledWork(env, now + 1 * DAY);
    expect(await env.FILES.head(goneKey)).not.toBeNull();

    await runScheduledWork(env, now + 8 * DAY);
    expect(await env.FILES.head(goneKey)).toBeNull();
    expect(await env.FILES.head(usedKey)).not.toBeNull();
    const rows = await env.DB.prepare(`SELECT r2_key FROM blobs`).all<{ r2_key: string }>();
    expect(rows.results.map((r) => r.r2_key)).toEqual([usedKey]);
    // The same file submitted again is stored again.
    const again = await submitOk({ start_frame: 1, end_frame: 1 }, blendBytes(4096, 'unused'));
    expect(await env.FILES.head(await inputKey(again.blend_file))).not.toBeNull();
  });
});

describe('deleting a large job over several runs', () => {
  it('answers 404 at once; the cron removes a few pages per run, resumes after a run that died, and leaves no object or row', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 12, chunk_size: 12 });
    const node = await registerWorker();
    const task = await claim(node);
    for (let frame = 1; frame <= 12; frame++) await json(await putFrame(node, task, frame, pngBytes(frame)), 201);
    // More leftovers under the job's prefixes, as from crashed uploads.
    for (let i = 0; i < 5; i++) await env.FILES.put(`previews/${job.job_id}/x/frame_00000${i}.jpg`, 'x');
    const prefixes = ['renders', 'previews', 'logs', 'outputs'].map((p) => `${p}/${job.job_id}/`);
    const countObjects = async () => (await Promise.all(prefixes.map(keysUnder))).flat().length;
    expect(await countObjects()).toBe(17);

    const deleted = await json<DeleteJobResponse>(await call(`/jobs/${job.job_id}`, { method: 'DELETE' }), 200);
    expect(deleted).toEqual({ job_id: job.job_id, deleted: true, deleted_objects: 0 });
    await expectError(await call(`/jobs/${job.job_id}`), 404, 'no job with id');
    await expectError(await call(`/jobs/${job.job_id}/frames/1`), 404, 'no job with id');

    // Pages of 2 keys, 4 calls per run (a job lookup, a list, a delete, saving the stage): 2 objects a run.
    const small: Env = { ...env, DELETE_PAGE_SIZE: '2', DELETE_CALLS_PER_RUN: '4' };
    // A run that dies after its first R2 delete.
    let deletes = 0;
    const dying: Env = {
      ...small,
      DELETE_CALLS_PER_RUN: '7',
      FILES: new Proxy(env.FILES, {
        get(target, prop) {
          if (prop === 'delete') {
            return async (keys: string[]) => {
              if (++deletes > 1) throw new Error('the run was killed');
              return target.delete(keys);
            };
          }
          const value = Reflect.get(target, prop) as unknown;
          return typeof value === 'function' ? value.bind(target) : value;
        },
      }),
    };
    await runScheduledWork(dying, Date.now());
    expect(await countObjects()).toBe(15);

    let runs = 0;
    while ((await jobRow(job.job_id)) && runs < 50) {
      const before = await countObjects();
      await runScheduledWork(small, Date.now());
      runs++;
      // Bounded: no run removes more than its page of objects.
      expect(before - (await countObjects())).toBeLessThanOrEqual(2);
      await expectError(await call(`/job_status/${job.job_id}`), 404, 'no job with id');
    }
    expect(runs).toBeGreaterThan(7);
    expect(await jobRow(job.job_id)).toBeNull();
    expect(await countObjects()).toBe(0);
    for (const table of ['tasks', 'frames', 'job_blocklist']) {
      const row = await env.DB.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE job_id = ?`).bind(job.job_id).first<{ n: number }>();
      expect(row!.n, table).toBe(0);
    }
  });
});

describe('an idle farm', () => {
  it('a cron run on an idle farm makes a few D1 queries and no R2 call', async () => {
    await runScheduledWork(env, Date.now()); // the first run starts the passes, then they wait
    let d1Calls = 0;
    let r2Calls = 0;
    const count = <T extends object>(target: T, onCall: () => void): T =>
      new Proxy(target, {
        get(t, prop) {
          const value = Reflect.get(t, prop) as unknown;
          if (typeof value !== 'function') return value;
          return (...args: unknown[]) => {
            const out = (value as (...a: unknown[]) => unknown).apply(t, args);
            // A statement is counted when it runs, a batch once.
            if (prop === 'prepare') return countStatement(out as D1PreparedStatement);
            onCall();
            return out;
          };
        },
      });
    const countStatement = (statement: D1PreparedStatement): D1PreparedStatement =>
      new Proxy(statement, {
        get(t, prop) {
          const value = Reflect.get(t, prop) as unknown;
          if (typeof value !== 'function') return value;
          return (...args: unknown[]) => {
            const out = (value as (...a: unknown[]) => unknown).apply(t, args);
            if (prop === 'bind') return countStatement(out as D1PreparedStatement);
            if (prop === 'first' || prop === 'all' || prop === 'run' || prop === 'raw') d1Calls++;
            return out;
          };
        },
      });
    const counted: Env = { ...env, DB: count(env.DB, () => d1Calls++), FILES: count(env.FILES, () => r2Calls++) };
    await runScheduledWork(counted, Date.now() + 60_000);
    expect(r2Calls).toBe(0);
    // Expired leases 1, stale uploads 1, deleted jobs 1, orphan cursor 1, input cursor 1, webhooks' own.
    expect(d1Calls).toBeLessThanOrEqual(8);
  });
});
