/**
 * Adaptive chunks: a job without chunk_size gets tasks sized from its measured frame times to
 * last about TARGET_CHUNK_MS, shrinking near the end so that every node online gets a share.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { readConfig } from '../../edge/env.ts';
import { claimTask } from '../../edge/scheduler.ts';
import { claim, json, pngBytes, putFrame, registerWorker, submitOk, update } from './helpers.ts';

/** Claims the 1-frame probe of `jobId`'s first claim and reports it rendered in `renderMs`. */
async function timeFirstFrame(worker: string, renderMs: number): Promise<void> {
  const probe = await claim(worker);
  expect(probe.frames).toHaveLength(1);
  await json(await putFrame(worker, probe, probe.frames[0]!, pngBytes(probe.frames[0]!), { renderMs }), 201);
  await json(await update(worker, probe, 'completed'), 200);
}

describe('adaptive chunk size', () => {
  it('TARGET_CHUNK_MS is read from the Worker vars, with 2 minutes as the default', () => {
    expect(readConfig({ ...env, TARGET_CHUNK_MS: '30000' }).targetChunkMs).toBe(30_000);
    expect(readConfig({ ...env, TARGET_CHUNK_MS: undefined }).targetChunkMs).toBe(120_000);
    expect(() => readConfig({ ...env, TARGET_CHUNK_MS: 'soon' })).toThrow('TARGET_CHUNK_MS must be a whole number');
  });

  it('a shorter target gives proportionally shorter tasks: 10 s at 1.7 s a frame is 5 frames', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 100 });
    const worker = await registerWorker();
    await timeFirstFrame(worker, 1_700);

    const claimed = await claimTask(env.DB, { workerId: worker, now: Date.now(), leaseMs: 60_000, targetChunkMs: 10_000, activeNodes: 1 });

    expect(claimed).toMatchObject({ outcome: 'claimed', claimed: { job_id: job.job_id, start_frame: 2, end_frame: 6 } });
  });

  it('near the end of a job a chunk is at most the remaining frames divided by the nodes online', async () => {
    await submitOk({ start_frame: 1, end_frame: 41 });
    const nodes = await Promise.all(['a', 'b', 'c', 'd'].map((name) => registerWorker(name)));
    // Fast frames: the 2-minute target alone would hand the whole rest of the job to one node.
    await timeFirstFrame(nodes[0]!, 100);

    const first = await claim(nodes[0]!);
    const second = await claim(nodes[1]!);

    // 40 frames left, 4 nodes seen within a lease: 10 each, then 30 / 4 = 7.
    expect(first.frames).toEqual(Array.from({ length: 10 }, (_, i) => i + 2));
    expect(second.frames).toEqual(Array.from({ length: 7 }, (_, i) => i + 12));
  });

  it('a job with chunk_size keeps it whatever its frames measure', async () => {
    await submitOk({ start_frame: 1, end_frame: 100, chunk_size: 3 });
    const worker = await registerWorker();
    const first = await claim(worker);
    await json(await putFrame(worker, first, 1, pngBytes(1), { renderMs: 50 }), 201);

    const next = await claim(worker);

    expect(first.frames).toEqual([1, 2, 3]);
    expect(next.frames).toEqual([4, 5, 6]);
  });
});
