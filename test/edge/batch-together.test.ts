/** Group commit (edge/batch-together.ts): batches that meet are sent as one, and still behave as their own. */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { batchTogether, groupCommitting } from '../../edge/batch-together.ts';
import { claimTask } from '../../edge/scheduler.ts';
import { jobRow, postJson, registerWorker, submitOk } from './helpers.ts';

/** The test's D1, counting the batches that reach it (and their sizes). */
function countedDb(): { db: D1Database; batches: number[] } {
  const batches: number[] = [];
  const db = {
    prepare: (sql: string) => env.DB.prepare(sql),
    batch: (statements: D1PreparedStatement[]) => {
      batches.push(statements.length);
      return env.DB.batch(statements);
    },
  } as unknown as D1Database;
  return { db, batches };
}

describe('batchTogether', () => {
  it('claims sent at the same time share batches, and still never get the same frames', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1000, chunk_size: 3 });
    const workers = await Promise.all(Array.from({ length: 24 }, (_, i) => registerWorker(`n${i}`)));
    const { db, batches } = countedDb();
    const claims = await Promise.all(
      workers.map((workerId) => claimTask(groupCommitting(db), { workerId, now: Date.now(), leaseMs: 60_000, targetChunkMs: 10_000 })),
    );
    const frames = claims.flatMap((c) => {
      if (c.outcome !== 'claimed') throw new Error(`a claim found ${c.outcome}`);
      return Array.from({ length: c.claimed.end_frame - c.claimed.start_frame + 1 }, (_, i) => c.claimed.start_frame + i);
    });
    expect(frames).toHaveLength(72);
    expect(new Set(frames).size).toBe(72);
    expect(Math.max(...frames)).toBe(72);
    expect(await jobRow(job.job_id)).toMatchObject({ next_frame: 73 });
    // The first claim finds the queue idle and goes alone; the 23 others, all waiting by then, go
    // together in groups of at most 200 statements (MAX_STATEMENTS): each claim alone would be 24 batches.
    const perClaim = batches.reduce((a, b) => a + b, 0) / 24;
    const perGroup = Math.floor(200 / perClaim);
    expect(batches).toEqual([perClaim, ...Array.from({ length: Math.ceil(23 / perGroup) }, (_, i) => Math.min(perGroup, 23 - i * perGroup) * perClaim)]);
  });

  it("one caller's failing statement fails only that caller; the others are applied exactly once", async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 10 });
    const start = (await jobRow(job.job_id))!.priority as number;
    const { db, batches } = countedDb();
    const bump = () => [db.prepare(`UPDATE jobs SET priority = priority + 1 WHERE id = ? RETURNING priority`).bind(job.job_id)];
    const outcomes = await Promise.allSettled([
      batchTogether(db, bump()),
      batchTogether(db, bump()),
      batchTogether(db, [db.prepare(`SELECT * FROM no_such_table`)]),
      batchTogether(db, bump()),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect(String((outcomes[2] as PromiseRejectedResult).reason)).toMatch(/no_such_table/);
    // Three bumps, whatever grouping and retries happened.
    expect(await jobRow(job.job_id)).toMatchObject({ priority: start + 3 });
    const seen = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [(o.value[0]!.results[0] as { priority: number }).priority] : []));
    expect(seen.sort()).toEqual([start + 1, start + 2, start + 3]);
    // The first caller went alone; the three that waited for it were sent once together, then,
    // as that group failed, each alone again.
    expect(batches).toEqual([1, 3, 1, 1, 1]);
  });

  it('the lead passes on: waves of callers keep being answered, each from its own batch results', async () => {
    const { db, batches } = countedDb();
    for (let wave = 0; wave < 3; wave++) {
      const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => batchTogether(db, [db.prepare(`SELECT ? AS n, ? AS wave`).bind(i, wave)])));
      expect(answers.map((a) => a[0]!.results[0])).toEqual(Array.from({ length: 30 }, (_, n) => ({ n, wave })));
    }
    // Each wave: its first caller finds the queue idle and goes alone; the 29 that waited for it go as one.
    expect(batches).toEqual([1, 29, 1, 29, 1, 29]);
  });

  it('a group that never comes back does not stall the others: the caller first in line leads after the stall time', async () => {
    let first = true;
    const db = {
      prepare: (sql: string) => env.DB.prepare(sql),
      // The first batch hangs, as a leader whose request was killed mid-batch would.
      batch: (statements: D1PreparedStatement[]) => (first ? ((first = false), new Promise<never>(() => {})) : env.DB.batch(statements)),
    } as unknown as D1Database;
    void batchTogether(db, [db.prepare(`SELECT 1 AS n`)], { stallMs: 50 });
    const started = Date.now();
    const [second, third] = await Promise.all([
      batchTogether(db, [db.prepare(`SELECT 2 AS n`)], { stallMs: 50 }),
      batchTogether(db, [db.prepare(`SELECT 3 AS n`)], { stallMs: 50 }),
    ]);
    expect([second[0]!.results[0], third[0]!.results[0]]).toEqual([{ n: 2 }, { n: 3 }]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(50);
  });

  it('get_job claims through it: concurrent requests get distinct frames', async () => {
    await submitOk({ start_frame: 1, end_frame: 500, chunk_size: 2 });
    const workers = await Promise.all(Array.from({ length: 16 }, (_, i) => registerWorker(`h${i}`)));
    const tasks = await Promise.all(workers.map(async (worker_id) => (await (await postJson('/get_job', { worker_id })).json()) as { frames: number[] }));
    const frames = tasks.flatMap((t) => t.frames);
    expect(frames).toHaveLength(32);
    expect(new Set(frames).size).toBe(32);
  });
});
