/**
 * Benchmark 6, an idle farm: what real render nodes cost the master while there is no work, and
 * how fast they still pick work up.
 *
 * A real master (`wrangler dev`) and `--nodes` real render nodes (worker-node, real Blender) sit
 * idle for `--seconds`. Every commit the master makes to its storage (D1, Durable Objects, R2
 * metadata) is counted from the SQLite files under its persist dir (`countStorageCommits` in
 * lib.ts: the WAL index's commit counter, with `PRAGMA data_version` as a lower-bound check).
 * The master alone is measured first for `--baseline-seconds`, so what the nodes add is apart
 * from what the master does by itself. Then a one- or two-frame job of a tiny scene is submitted
 * and the time from the submission's answer to the first node's claim is measured (as
 * bench/pickup-latency.ts does, with `waitForPickup`).
 *
 * Goals: at most 1 storage commit per idle node-minute; pickup within 1 s.
 *
 *   node bench/idle.ts [--nodes 2] [--seconds 60] [--baseline-seconds 15] [--frames 2]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  BENCH_MASTER_VARS,
  countStorageCommits,
  isMain,
  machineInfo,
  makeScene,
  report,
  reportCommitsByKind,
  runBench,
  startMaster,
  startNode,
  submitJob,
  tempDir,
  verdict,
  waitFor,
  waitForJob,
  waitForPickup,
  type RenderNode,
} from './lib.ts';

export interface IdleResult {
  nodes: number;
  idleSeconds: number;
  /** Commits to D1, Durable Objects and R2 while the nodes waited. */
  commits: number;
  commitsPerNodeMinute: number;
  /** Commits per minute of the master alone, before any node started. */
  baselinePerMinute: number;
  claimMs: number;
  runningMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function benchIdle(options: { nodes: number; seconds: number; baselineSeconds: number; frames: number }): Promise<IdleResult> {
  const { nodes, seconds, baselineSeconds, frames } = options;
  console.log(`idle farm: ${nodes} real render nodes idle for ${seconds} s on a real master, then a ${frames}-frame job`);
  const dir = tempDir('bench-idle');
  const blend = join(dir, 'tiny.blend');
  makeScene('make_anim_scene.py', [blend, '--frames', String(frames), '--width', '32', '--height', '24']);
  const master = await startMaster({ name: 'bench-idle', vars: BENCH_MASTER_VARS });
  const counter = countStorageCommits(master.persistDir);
  const started: RenderNode[] = [];
  try {
    await sleep(baselineSeconds * 1000);
    const baseline = counter.read();
    console.log(`master alone, ${baselineSeconds} s:`);
    reportCommitsByKind(baseline);

    for (let i = 0; i < nodes; i++) started.push(startNode({ name: `bench-idle-${i}`, master: master.url }));
    await waitFor(`${nodes} nodes to register`, async () => {
      const body = (await (await fetch(`${master.url}/workers`)).json()) as { workers: { name: string }[] };
      return started.every((node) => body.workers.some((w) => w.name === node.name));
    }, 60_000);
    // Registration and the nodes' first requests are start-up, not idling.
    await sleep(3_000);
    counter.reset();
    const idleStarted = performance.now();
    await sleep(seconds * 1000);
    const idle = counter.read();
    const idleSeconds = (performance.now() - idleStarted) / 1000;
    console.log(`${nodes} nodes idle, ${idleSeconds.toFixed(1)} s:`);
    reportCommitsByKind(idle);

    const form = new Blob([readFileSync(blend)]);
    const job = await submitJob(master.url, form, { start_frame: 1, end_frame: frames, name: 'idle-bench' }, 'tiny.blend');
    const answered = performance.now();
    const pickup = await waitForPickup(master.url, job.job_id, answered);
    const done = await waitForJob(master.url, job.job_id, ['completed', 'failed'], 180_000);
    if (done.status !== 'completed') throw new Error(`the job ended ${done.status}`);

    const nodeMinutes = (nodes * idleSeconds) / 60;
    const baselinePerMinute = baseline.commits / (baselineSeconds / 60);
    // What the nodes cost: the commits while they idled, less what the master does alone in as long.
    const nodesCommits = Math.max(0, idle.commits - baselinePerMinute * (idleSeconds / 60));
    const result: IdleResult = {
      nodes,
      idleSeconds,
      commits: idle.commits,
      commitsPerNodeMinute: idle.commits / nodeMinutes,
      baselinePerMinute,
      claimMs: pickup.claimedMs,
      runningMs: pickup.runningMs,
    };
    console.log('results:');
    report('master alone', baselinePerMinute, 'commits/min', `${baseline.commits} in ${baselineSeconds} s`);
    report('idle nodes, all commits', idle.commits, 'commits', `${nodes} nodes x ${idleSeconds.toFixed(1)} s; data_version saw >= ${idle.dataVersionChanges}`);
    report('of them, what the nodes add', nodesCommits / nodeMinutes, 'commits/node-min', 'less the master-alone rate');
    report('local-only commits (trace store, miniflare)', idle.localOnlyCommits, 'commits', 'not counted: a deployed master has none');
    report('submission answered to first claim', pickup.claimedMs, 'ms');
    report('submission answered to running', pickup.runningMs, 'ms');
    verdict('commits per idle node-minute', result.commitsPerNodeMinute, '<= 1', result.commitsPerNodeMinute <= 1);
    verdict('pickup: answer to first claim (s)', pickup.claimedMs / 1000, '<= 1 s', pickup.claimedMs <= 1_000);
    return result;
  } finally {
    counter.stop();
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
    },
  });
  runBench(async () => {
    console.log(`machine: ${machineInfo()}`);
    await benchIdle({ nodes: Number(values.nodes), seconds: Number(values.seconds), baselineSeconds: Number(values['baseline-seconds']), frames: Number(values.frames) });
  });
}
