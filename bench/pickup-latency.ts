/**
 * Benchmark 5, pickup latency: from the moment a job is submitted to the moment an idle render
 * node reports its task `running`. Idle nodes wait in a long-polling `get_job` that the
 * submission wakes (edge/work-signal.ts); Flamenco's idle workers poll every 20 s.
 *
 * Each round waits a random 1-3 s (so submissions land anywhere in the node's poll cycle), submits
 * a one-frame job of a small real scene and polls the job's tasks every 10 ms for the node's
 * `running` report (the task's message turns to "rendering"), then waits for the job to finish.
 *
 *   node bench/pickup-latency.ts [--rounds 8]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  BENCH_MASTER_VARS,
  isMain,
  machineInfo,
  makeScene,
  report,
  runBench,
  startMaster,
  startNode,
  tempDir,
  verdict,
  waitFor,
  waitForJob,
  waitForPickup,
} from './lib.ts';

export interface PickupResult {
  medianMs: number;
  maxMs: number;
}

export async function benchPickup(options: { rounds: number }): Promise<PickupResult> {
  console.log(`pickup latency: ${options.rounds} one-frame jobs submitted to an idle node`);
  const dir = tempDir('bench-pickup');
  const blend = join(dir, 'tiny.blend');
  makeScene('make_anim_scene.py', [blend, '--frames', '2', '--width', '32', '--height', '24']);
  const bytes = readFileSync(blend);
  const master = await startMaster({ name: 'bench-pickup', vars: BENCH_MASTER_VARS });
  const node = startNode({ name: 'bench-pickup', master: master.url });
  try {
    await waitFor(
      'the node to register',
      async () => {
        const body = (await (await fetch(`${master.url}/workers`)).json()) as { workers: { name: string }[] };
        return body.workers.some((w) => w.name === node.name);
      },
      60_000,
    );
    const claimMs: number[] = [];
    const runningMs: number[] = [];
    for (let round = 0; round < options.rounds; round++) {
      await new Promise((r) => setTimeout(r, 1_000 + Math.random() * 2_000));
      const form = new FormData();
      form.set('blend_file', new Blob([bytes]), 'tiny.blend');
      form.set('start_frame', '1');
      form.set('end_frame', '1');
      // A distinct name per round; the blend is the same file, stored once.
      form.set('name', `pickup-${round}`);
      const started = performance.now();
      const response = await fetch(`${master.url}/submit_job`, { method: 'POST', body: form });
      const job = (await response.json()) as { job_id: string };
      if (response.status !== 201) throw new Error(`submit_job answered ${response.status}: ${JSON.stringify(job)}`);
      const { claimedMs: claimed, runningMs: running } = await waitForPickup(master.url, job.job_id, started);
      claimMs.push(claimed);
      runningMs.push(running);
      report(`round ${round + 1}: claimed / running after`, `${claimed.toFixed(0)} / ${running.toFixed(0)}`, 'ms');
      await waitForJob(master.url, job.job_id, ['completed', 'failed'], 120_000);
    }
    const sorted = [...runningMs].sort((a, b) => a - b);
    const medianMs = sorted[Math.floor(sorted.length / 2)]!;
    const maxMs = sorted.at(-1)!;
    console.log('results:');
    report('submit to running, median / max', `${medianMs.toFixed(0)} / ${maxMs.toFixed(0)}`, 'ms');
    verdict('max submit-to-running (s)', maxMs / 1000, '<= 1 s', maxMs <= 1_000);
    return { medianMs, maxMs };
  } finally {
    await node.stop();
    await master.stop();
  }
}

if (isMain(import.meta)) {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '8' } } });
  runBench(async () => {
    console.log(`machine: ${machineInfo()}`);
    await benchPickup({ rounds: Number(values.rounds) });
  });
}
