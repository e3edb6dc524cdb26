/**
 * Benchmark 7, a large idle farm: `--nodes` simulated render nodes (1,000 by default) wait on
 * one local master, then a job with one frame per node arrives.
 *
 * Each simulated node is a loop in this process: it registers (`POST /register_worker`), then
 * long-polls `POST /get_job {"worker_id", "wait_ms": 20000}` on a keep-alive connection of its
 * own (an undici Pool with one connection per node). While they all wait for `--seconds`, what
 * the master writes to D1, its Durable Objects and R2 is watched (`watchStorage`,
 * test/e2e/storage-watch.ts): every commit (locally one per D1 query), and the commits that
 * changed data other than local bookkeeping, the writes a deployed master bills. Then a job of `--nodes` frames with `chunk_size` 1 (a tiny real scene) is submitted:
 * the time from the submission's answer until every node holds a frame, and whether any frame
 * was handed out twice. Simulated nodes do not render: a node that got a frame holds its lease
 * (renewing it as a rendering node would) and asks for nothing more.
 *
 * Goals: at most 1 storage write (a row changed) per waiting node-minute; no frame handed out twice.
 *
 *   node bench/scale.ts [--nodes 1000] [--seconds 60] [--wait-ms 20000]
 */
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  BENCH_MASTER_VARS,
  isMain,
  machineInfo,
  makeScene,
  pool,
  postJson,
  report,
  reportWritesByKind,
  runBench,
  startMaster,
  submitJob,
  tempDir,
  verdict,
  waitFor,
  watchStorage,
} from './lib.ts';

export interface ScaleResult {
  nodes: number;
  waitSeconds: number;
  /** Commits to D1, Durable Objects and R2 while the nodes waited (one per D1 query locally). */
  commits: number;
  commitsPerNodeMinute: number;
  /** Of those, the ones that changed data other than local bookkeeping (a lower bound: commits between two reads of the tables, 250 ms apart, count once). */
  writes: number;
  /** Rows those commits inserted, changed or deleted, per node-minute: the verdict's figure (each liveness write is one row). */
  rowsChangedPerNodeMinute: number;
  /** From the submission's answer until every node held a frame; null if some never did. */
  allHoldSeconds: number | null;
  holding: number;
  duplicates: number;
  pollErrors: number;
}

interface Assignment {
  task_id: string;
  lease_id: string;
  lease_ms: number;
  frames: number[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function benchScale(options: { nodes: number; seconds: number; waitMs: number }): Promise<ScaleResult> {
  const { nodes, seconds, waitMs } = options;
  console.log(`scale: ${nodes} simulated nodes long-polling (wait_ms ${waitMs}) one master for ${seconds} s, then a ${nodes}-frame job, chunk_size 1`);
  const dir = tempDir('bench-scale');
  const blend = join(dir, 'tiny.blend');
  makeScene('make_anim_scene.py', [blend, '--frames', '2', '--width', '32', '--height', '24']);
  const master = await startMaster({ name: 'bench-scale', vars: BENCH_MASTER_VARS });
  // The tables are read (a copy of D1 and its WAL) at most 4 times a second: commits between two
  // reads count once, the rows they changed are all counted.
  const storage = watchStorage(master.persistDir, { tablesEveryMs: 250 });
  // One connection per node, as each real node keeps its own; a few more for the bench's own requests.
  const http = pool(master.url, nodes + 8);
  let stopping = false;
  try {
    const workers: string[] = [];
    const registerStarted = performance.now();
    for (let next = 0; next < nodes; next += 32) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(32, nodes - next) }, async (_, i) => {
          const { status, text } = await postJson(http, '/register_worker', { name: `sim-${next + i}` });
          if (status !== 201) throw new Error(`register_worker answered ${status}: ${text.slice(0, 200)}`);
          return (JSON.parse(text) as { worker_id: string }).worker_id;
        }),
      );
      workers.push(...batch);
    }
    report('registered', nodes, 'nodes', `${((performance.now() - registerStarted) / 1000).toFixed(1)} s`);

    let inFlight = 0;
    let polls = 0;
    let pollErrors = 0;
    let firstPollError: string | undefined;
    const claims: { node: number; at: number; assignment: Assignment }[] = [];
    let jobAnsweredAt = Infinity;
    const loops = workers.map(async (workerId, node) => {
      let held: Assignment | undefined;
      while (!stopping && !held) {
        inFlight++;
        try {
          const { status, text } = await postJson(http, '/get_job', { worker_id: workerId, wait_ms: waitMs });
          polls++;
          if (status === 200) {
            held = JSON.parse(text) as Assignment;
            claims.push({ node, at: performance.now(), assignment: held });
          } else if (status !== 204) {
            throw new Error(`get_job answered ${status}: ${text.slice(0, 200)}`);
          }
        } catch (err) {
          if (stopping) break;
          pollErrors++;
          firstPollError ??= (err as Error).message;
          await sleep(1_000);
        } finally {
          inFlight--;
        }
      }
      // Holding a frame: renew the lease as a rendering node does, until the bench ends.
      while (!stopping && held) {
        await sleep(held.lease_ms / 3);
        if (stopping) break;
        await postJson(http, '/update_task_status', { worker_id: workerId, task_id: held.task_id, lease_id: held.lease_id, status: 'running' }).catch(() => {});
      }
    });

    await waitFor(`${nodes} polls in flight`, async () => inFlight === nodes, 120_000, 100);
    // Let the first answers' start-up writes (first sight of each node) settle before counting.
    await sleep(3_000);
    storage.reset();
    const pollsBefore = polls;
    const errorsBefore = pollErrors;
    const waitStarted = performance.now();
    await sleep(seconds * 1000);
    const waiting = storage.read();
    const waitSeconds = (performance.now() - waitStarted) / 1000;
    const waitPolls = polls - pollsBefore;
    const waitErrors = pollErrors - errorsBefore;
    console.log(`${nodes} nodes waiting, ${waitSeconds.toFixed(1)} s (${waitPolls} polls answered, ${waitErrors} failed, ${inFlight} in flight at the end):`);
    reportWritesByKind(waiting);

    await submitJob(master.url, new Blob([readFileSync(blend)]), { start_frame: 1, end_frame: nodes, chunk_size: 1, name: 'scale-bench' }, 'tiny.blend');
    jobAnsweredAt = performance.now();
    let allHoldSeconds: number | null = null;
    try {
      await waitFor('every node to hold a frame', async () => claims.length >= nodes, 120_000, 20);
      allHoldSeconds = (Math.max(...claims.map((c) => c.at)) - jobAnsweredAt) / 1000;
    } catch (err) {
      console.log(`  ${(err as Error).message}: ${claims.length} of ${nodes} hold a frame`);
    }
    const frameCounts = new Map<number, number>();
    for (const c of claims) for (const frame of c.assignment.frames) frameCounts.set(frame, (frameCounts.get(frame) ?? 0) + 1);
    const duplicates = [...frameCounts.values()].reduce((sum, n) => sum + (n - 1), 0);
    const holding = new Set(claims.map((c) => c.node)).size;
    const sortedMs = claims.map((c) => c.at - jobAnsweredAt).sort((a, b) => a - b);
    const at = (q: number) => (sortedMs.length ? sortedMs[Math.min(sortedMs.length - 1, Math.floor(q * sortedMs.length))]! : NaN);

    const nodeMinutes = (nodes * waitSeconds) / 60;
    const result: ScaleResult = {
      nodes,
      waitSeconds,
      commits: waiting.commits,
      commitsPerNodeMinute: waiting.commits / nodeMinutes,
      writes: waiting.dataCommits,
      rowsChangedPerNodeMinute: waiting.rowsChanged / nodeMinutes,
      allHoldSeconds,
      holding,
      duplicates,
      pollErrors,
    };
    console.log('results:');
    report(
      'waiting: commits (D1, DOs, R2)',
      waiting.commits,
      'commits',
      `${result.commitsPerNodeMinute.toFixed(3)} per node-minute; local-only ${waiting.localOnlyCommits} not counted`,
    );
    report('waiting: commits that changed data', waiting.dataCommits, 'writes', 'the rest only bumped local bookkeeping (_cf_METADATA)');
    report('waiting: rows those commits changed', waiting.rowsChanged, 'rows', `${(waiting.rowsChanged / nodeMinutes).toFixed(3)} per node-minute`);
    report('waiting: get_job answers', waitPolls / nodeMinutes, 'per node-minute', `${waitErrors} failed`);
    report(
      'first / median / last node holding a frame',
      `${(at(0) / 1000).toFixed(2)} / ${(at(0.5) / 1000).toFixed(2)} / ${(at(1) / 1000).toFixed(2)}`,
      's',
      'after the submission was answered',
    );
    report('nodes holding a frame', `${holding} of ${nodes}`);
    report('frames handed out / distinct', `${[...frameCounts.values()].reduce((a, b) => a + b, 0)} / ${frameCounts.size}`);
    if (firstPollError) report('first failed poll', firstPollError);
    verdict('rows written per waiting node-minute', result.rowsChangedPerNodeMinute, '<= 1', result.rowsChangedPerNodeMinute <= 1);
    verdict('frames handed out twice', duplicates, '0', duplicates === 0);
    verdict('every node holds a frame, after (s)', allHoldSeconds ?? Infinity, `all ${nodes}`, allHoldSeconds !== null);
    // The loops end on their own once the pool is closed (a node holding a frame, at its next renewal).
    void Promise.allSettled(loops);
    return result;
  } finally {
    stopping = true;
    storage.stop();
    await http.destroy().catch(() => {});
    await master.stop();
  }
}

if (isMain(import.meta)) {
  const { values } = parseArgs({
    options: {
      nodes: { type: 'string', default: '1000' },
      seconds: { type: 'string', default: '60' },
      'wait-ms': { type: 'string', default: '20000' },
    },
  });
  runBench(async () => {
    console.log(`machine: ${machineInfo()}`);
    await benchScale({ nodes: Number(values.nodes), seconds: Number(values.seconds), waitMs: Number(values['wait-ms']) });
  });
}
