/**
 * Benchmark 6, an idle farm: what real render nodes cost the master while there is no work, and
 * how fast they still pick work up.
 *
 * A real master (`wrangler dev`) and `--nodes` real render nodes (worker-node, real Blender) sit
 * idle for `--seconds`. What the master writes to its storage (D1, Durable Objects, R2
 * metadata) is watched in the SQLite files under its persist dir (`watchStorage`,
 * test/e2e/storage-watch.ts): every commit, and the commits that changed data other than local
 * bookkeeping. Under `wrangler dev` every D1 query commits once (workerd bumps a local
 * `_cf_METADATA` row on each call), so only the second count is what a deployed D1 bills as a
 * write, and the verdict is on it. The master alone is measured first for `--baseline-seconds`,
 * so what the nodes add is apart from what the master does by itself. Then a one- or two-frame
 * job of a tiny scene is submitted and the time from the submission's answer to the first node's
 * claim is measured (as bench/pickup-latency.ts does, with `waitForPickup`).
 *
 * `--tokens` runs the master as deployed: FARM_ALLOW_ANONYMOUS=false, a submitter and an
 * enrolment token, the default rate limit on (every node request counted, edge/auth.ts), and
 * nodes enrolled with `--token`. Without it the master is open and has no rate limit.
 *
 * Goals: at most 1 storage write per idle node-minute; pickup within 1 s.
 *
 *   node bench/idle.ts [--nodes 2] [--seconds 60] [--baseline-seconds 15] [--frames 2] [--tokens]
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  authHeaders,
  BENCH_MASTER_VARS,
  isMain,
  machineInfo,
  makeScene,
  report,
  reportWritesByKind,
  runBench,
  startMaster,
  startNode,
  submitJob,
  tempDir,
  verdict,
  waitFor,
  waitForJob,
  waitForPickup,
  watchStorage,
  type RenderNode,
} from './lib.ts';

export interface IdleResult {
  nodes: number;
  idleSeconds: number;
  tokens: boolean;
  /** Commits to D1, Durable Objects and R2 while the nodes waited (one per D1 query locally). */
  commits: number;
  commitsPerNodeMinute: number;
  /** Of those, the commits that changed data other than local bookkeeping: billed writes. */
  writes: number;
  writesPerNodeMinute: number;
  /** Writes per minute of the master alone, before any node started. */
  baselineWritesPerMinute: number;
  claimMs: number;
  runningMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function benchIdle(options: { nodes: number; seconds: number; baselineSeconds: number; frames: number; tokens?: boolean }): Promise<IdleResult> {
  const { nodes, seconds, baselineSeconds, frames, tokens = false } = options;
  console.log(
    `idle farm: ${nodes} real render nodes idle for ${seconds} s on a real master${tokens ? ' with tokens and the default rate limit' : ' (open, no rate limit)'}, then a ${frames}-frame job`,
  );
  const dir = tempDir('bench-idle');
  const blend = join(dir, 'tiny.blend');
  makeScene('make_anim_scene.py', [blend, '--frames', String(frames), '--width', '32', '--height', '24']);
  const submitToken = tokens ? `submit-${randomBytes(16).toString('hex')}` : undefined;
  const enrolToken = `enrol-${randomBytes(16).toString('hex')}`;
  const master = await startMaster({
    name: 'bench-idle',
    vars: tokens ? { FARM_ALLOW_ANONYMOUS: 'false', FARM_SUBMIT_TOKEN: submitToken!, FARM_NODE_TOKEN: enrolToken } : BENCH_MASTER_VARS,
  });
  const storage = watchStorage(master.persistDir);
  const started: RenderNode[] = [];
  try {
    await sleep(baselineSeconds * 1000);
    const baseline = storage.read();
    console.log(`master alone, ${baselineSeconds} s:`);
    reportWritesByKind(baseline);

    for (let i = 0; i < nodes; i++) started.push(startNode({ name: `bench-idle-${i}`, master: master.url, args: tokens ? ['--token', enrolToken] : [] }));
    await waitFor(
      `${nodes} nodes to register`,
      async () => {
        const body = (await (await fetch(`${master.url}/workers`, { headers: authHeaders(submitToken) })).json()) as { workers: { name: string }[] };
        return started.every((node) => body.workers.some((w) => w.name === node.name));
      },
      60_000,
    );
    // Registration and the nodes' first requests are start-up, not idling.
    await sleep(3_000);
    storage.reset();
    const idleStarted = performance.now();
    await sleep(seconds * 1000);
    const idle = storage.read();
    const idleSeconds = (performance.now() - idleStarted) / 1000;
    console.log(`${nodes} nodes idle, ${idleSeconds.toFixed(1)} s:`);
    reportWritesByKind(idle);

    const form = new Blob([readFileSync(blend)]);
    const job = await submitJob(master.url, form, { start_frame: 1, end_frame: frames, name: 'idle-bench' }, 'tiny.blend', submitToken);
    const answered = performance.now();
    const pickup = await waitForPickup(master.url, job.job_id, answered, 60_000, submitToken);
    const done = await waitForJob(master.url, job.job_id, ['completed', 'failed'], 180_000, submitToken);
    if (done.status !== 'completed') throw new Error(`the job ended ${done.status}`);

    const nodeMinutes = (nodes * idleSeconds) / 60;
    const baselineWritesPerMinute = baseline.dataCommits / (baselineSeconds / 60);
    // What the nodes cost: the writes while they idled, less what the master writes alone in as long.
    const nodesWrites = Math.max(0, idle.dataCommits - baselineWritesPerMinute * (idleSeconds / 60));
    const result: IdleResult = {
      nodes,
      idleSeconds,
      tokens,
      commits: idle.commits,
      commitsPerNodeMinute: idle.commits / nodeMinutes,
      writes: idle.dataCommits,
      writesPerNodeMinute: idle.dataCommits / nodeMinutes,
      baselineWritesPerMinute,
      claimMs: pickup.claimedMs,
      runningMs: pickup.runningMs,
    };
    console.log('results:');
    report('master alone: commits / writes', `${baseline.commits} / ${baseline.dataCommits}`, '', `in ${baselineSeconds} s`);
    report('idle nodes: all commits', idle.commits, 'commits', `${(idle.commits / nodeMinutes).toFixed(2)} per node-minute: one per D1 query locally`);
    report('idle nodes: commits that changed data', idle.dataCommits, 'writes', 'the rest only bumped local bookkeeping (_cf_METADATA, __miniflare_do_name)');
    report('idle nodes: rows those commits changed', idle.rowsChanged, 'rows');
    report('of them, what the nodes add', nodesWrites / nodeMinutes, 'writes/node-min', 'less the master-alone rate');
    report('local-only commits (trace store, miniflare)', idle.localOnlyCommits, 'commits', 'not counted: a deployed master has none');
    report('submission answered to first claim', pickup.claimedMs, 'ms');
    report('submission answered to running', pickup.runningMs, 'ms');
    verdict('storage writes per idle node-minute', result.writesPerNodeMinute, '<= 1', result.writesPerNodeMinute <= 1);
    verdict('pickup: answer to first claim (s)', pickup.claimedMs / 1000, '<= 1 s', pickup.claimedMs <= 1_000);
    return result;
  } finally {
    storage.stop();
    await Promise.all(started.map((node) => node.stop()));
    await master.stop();
  }
}

if (isMain(import.meta)) {
  const { values } = parseArgs({
    options: {
      nodes: { type: 'string', default: '2' },
      seconds: { type: 'string', default: '60' },
      'baseline-seconds': { type: 'string', default: '15' },
      frames: { type: 'string', default: '2' },
      tokens: { type: 'boolean', default: false },
    },
  });
  runBench(async () => {
    console.log(`machine: ${machineInfo()}`);
    await benchIdle({
      nodes: Number(values.nodes),
      seconds: Number(values.seconds),
      baselineSeconds: Number(values['baseline-seconds']),
      frames: Number(values.frames),
      tokens: values.tokens,
    });
  });
}
