/**
 * Benchmark 8, what the master costs on Cloudflare: the billed units of a real job and of an
 * idle hour, priced at the published rates, and whether a 10-node farm rendering 10,000 frames a
 * day fits the Free plan.
 *
 * The master runs from bench/metered-master.ts: the same Worker with meters on what Cloudflare
 * bills (Worker requests, D1 `meta.rows_read` / `rows_written`, R2 operations by class, Durable
 * Object calls), read from the Worker itself, with D1's rows also per SQL statement (the job's
 * statements that write are listed, per frame); storage commits, and the commits among them that
 * changed data, are watched in the SQLite files as in bench/idle.ts. The benchmark's own requests (its submission, its polling of the job) are
 * counted apart and left out of the farm's figures.
 *
 * 1. A real job: `--frames` frames of a tiny scene, one real render node (real Blender), with the
 *    master's own chunking unless `--chunk-size` is given. Per 1,000 frames = measured x 1000 /
 *    frames (the one submission is shown apart, per job).
 * 2. An idle hour, SIMULATED: the node idles for `--idle-seconds` (a minute), the cron handler
 *    runs once a minute as its trigger would (`/__scheduled`), and the counts are scaled to an
 *    hour.
 *
 *   node bench/cost.ts [--frames 8] [--chunk-size N] [--idle-seconds 60]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Meter } from './metered-master.ts';
import {
  BENCH_MASTER_VARS,
  isMain,
  machineInfo,
  makeScene,
  report,
  runBench,
  startMeteredMaster,
  startNode,
  tempDir,
  waitFor,
  watchStorage,
  type StorageWrites,
} from './lib.ts';

/** Cloudflare's published prices and allowances, as used here (checked 2026-12-04). */
export const RATES = {
  workersPaidBasePerMonth: 5,
  requests: { freePerDay: 100_000, paidIncludedPerMonth: 10_000_000, paidPerMillion: 0.3 },
  d1Read: { freePerDay: 5_000_000, paidIncludedPerMonth: 25_000_000_000, paidPerMillion: 0.001 },
  d1Written: { freePerDay: 100_000, paidIncludedPerMonth: 50_000_000, paidPerMillion: 1.0 },
  // R2's free allowance is monthly on every plan; per day here is a thirtieth of it.
  r2ClassA: { freePerDay: 1_000_000 / 30, paidIncludedPerMonth: 1_000_000, paidPerMillion: 4.5 },
  r2ClassB: { freePerDay: 10_000_000 / 30, paidIncludedPerMonth: 10_000_000, paidPerMillion: 0.36 },
  doRequests: { freePerDay: 100_000, paidIncludedPerMonth: 1_000_000, paidPerMillion: 0.15 },
  doDurationGbS: { freePerDay: 13_000, paidIncludedPerMonth: 400_000, paidPerMillion: 12.5 },
} as const;

type Unit = keyof Omit<typeof RATES, 'workersPaidBasePerMonth'>;

/** Billed units of one stretch of time, and the local storage commits (all, and those that changed data). */
type Units = Record<Exclude<Unit, 'doDurationGbS'>, number> & { commits: number; dataCommits: number };

const UNIT_NAMES: Record<Unit, string> = {
  requests: 'Worker requests',
  d1Read: 'D1 rows read',
  d1Written: 'D1 rows written',
  r2ClassA: 'R2 class A operations',
  r2ClassB: 'R2 class B operations',
  doRequests: 'Durable Object requests',
  doDurationGbS: 'Durable Object duration (GB-s)',
};

const sum = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

function unitsOf(meter: Meter | undefined, storage?: StorageWrites): Units {
  return {
    requests: meter ? sum(meter.requests) : 0,
    d1Read: meter?.d1.rowsRead ?? 0,
    d1Written: meter?.d1.rowsWritten ?? 0,
    r2ClassA: meter?.r2.classA ?? 0,
    r2ClassB: meter?.r2.classB ?? 0,
    doRequests: meter ? sum(meter.durableObjectRequests) : 0,
    commits: storage?.commits ?? 0,
    dataCommits: storage?.dataCommits ?? 0,
  };
}

const scale = (u: Units, factor: number): Units => Object.fromEntries(Object.entries(u).map(([k, v]) => [k, v * factor])) as Units;
const add = (...us: Units[]): Units => Object.fromEntries(Object.keys(us[0]!).map((k) => [k, us.reduce((s, u) => s + u[k as keyof Units], 0)])) as Units;

export interface CostResult {
  per1000Frames: Units;
  perSubmission: Units;
  perIdleNodeHour: Units;
  cronPerHour: Units;
  farmPerDay: Units & { doDurationGbS: number };
  fitsFreePlan: boolean;
  paidPerMonthUsd: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function benchCost(options: { frames: number; chunkSize?: number; idleSeconds: number }): Promise<CostResult> {
  const { frames, chunkSize, idleSeconds } = options;
  console.log(`cost: a ${frames}-frame job on one real node${chunkSize ? `, chunk_size ${chunkSize}` : ''}, then ${idleSeconds} s idle (scaled to an hour)`);
  const dir = tempDir('bench-cost');
  const blend = join(dir, 'tiny.blend');
  makeScene('make_anim_scene.py', [blend, '--frames', String(frames), '--width', '64', '--height', '48']);
  const master = await startMeteredMaster({ name: 'bench-cost', vars: BENCH_MASTER_VARS });
  // The tables are read (a copy of D1 and its WAL) at most 5 times a second: commits between two
  // reads count once as a data commit; what D1 bills is the rows in the meters anyway.
  const counter = watchStorage(master.persistDir, { tablesEveryMs: 200 });
  const node = startNode({ name: 'bench-cost', master: master.url });
  const as = (role: string) => ({ 'x-bench-role': role });
  const meterState = async () => (await (await fetch(`${master.url}/__bench/meter`)).json()) as { instance: string; meters: Record<string, Meter> };
  let instance = '';
  const resetMeters = async () => {
    await fetch(`${master.url}/__bench/meter/reset`, { method: 'POST' });
    counter.reset();
    instance = (await meterState()).instance;
  };
  // wrangler dev reloads the Worker when a file under edge/ changes, which empties the meters.
  const readMeters = async () => {
    const state = await meterState();
    if (state.instance !== instance)
      throw new Error('the master reloaded during the measurement (a file under edge/ changed): run again on a tree nobody edits');
    return state.meters;
  };
  try {
    await waitFor(
      'the node to register',
      async () => {
        const body = (await (await fetch(`${master.url}/workers`, { headers: as('bench') })).json()) as { workers: { name: string }[] };
        return body.workers.some((w) => w.name === node.name);
      },
      60_000,
    );
    await sleep(3_000);

    // 1. The job.
    await resetMeters();
    const form = new FormData();
    form.set('blend_file', new Blob([readFileSync(blend)]), 'tiny.blend');
    form.set('start_frame', '1');
    form.set('end_frame', String(frames));
    form.set('name', 'cost-bench');
    if (chunkSize) form.set('chunk_size', String(chunkSize));
    const submitted = await fetch(`${master.url}/submit_job`, { method: 'POST', body: form, headers: as('submit') });
    const job = (await submitted.json()) as { job_id: string };
    if (submitted.status !== 201) throw new Error(`submit_job answered ${submitted.status}: ${JSON.stringify(job)}`);
    const jobStarted = performance.now();
    await waitFor(
      'the job to end',
      async () => {
        const status = (await (await fetch(`${master.url}/job_status/${job.job_id}`, { headers: as('bench') })).json()) as { status: string };
        if (status.status === 'failed' || status.status === 'cancelled') throw new Error(`the job ended ${status.status}`);
        return status.status === 'completed';
      },
      300_000,
      1_000,
    );
    const jobSeconds = (performance.now() - jobStarted) / 1000;
    // The node's last report and its next poll belong to the job.
    await sleep(2_000);
    const jobMeters = await readMeters();
    const jobCommits = counter.read();

    // 2. The idle minute(s), with the cron handler run once a minute as in production.
    await resetMeters();
    const idleStarted = performance.now();
    let cronRuns = 0;
    for (let elapsed = 0; elapsed < idleSeconds * 1000; elapsed = performance.now() - idleStarted) {
      if (elapsed >= cronRuns * 60_000) {
        cronRuns++;
        const cron = await fetch(`${master.url}/__scheduled?cron=${encodeURIComponent('* * * * *')}`);
        if (!cron.ok) throw new Error(`/__scheduled answered ${cron.status}`);
      }
      await sleep(Math.min(1_000, idleSeconds * 1000 - elapsed));
    }
    const idleMeasured = (performance.now() - idleStarted) / 1000;
    const idleMeters = await readMeters();
    const idleCommits = counter.read();

    // What the cron handler wrote is in the commits too; it is apart in the meters (role "cron").
    const farmJob = unitsOf(jobMeters.farm, jobCommits);
    const perSubmission = unitsOf(jobMeters.submit);
    const per1000Frames = scale(farmJob, 1000 / frames);
    const perIdleNodeHour = scale(unitsOf(idleMeters.farm, idleCommits), 3600 / idleMeasured);
    const cronPerHour = scale(unitsOf(idleMeters.cron), 60 / cronRuns);

    console.log(`job: ${frames} frames in ${jobSeconds.toFixed(1)} s; the farm's requests by route:`);
    for (const [route, n] of Object.entries(jobMeters.farm?.requests ?? {}).sort((a, b) => b[1] - a[1])) console.log(`    ${route.padEnd(48)} ${n}`);
    console.log(
      `    R2 by operation: ${JSON.stringify(jobMeters.farm?.r2.byOperation ?? {})}; DO calls: ${JSON.stringify(jobMeters.farm?.durableObjectRequests ?? {})}`,
    );
    console.log(
      `    D1: ${jobMeters.farm?.d1.statements ?? 0} statements in ${jobMeters.farm?.d1.batches ?? 0} batches, ${jobMeters.farm?.d1.unmetered ?? 0} without meta`,
    );
    console.log(
      `    the submission: ${JSON.stringify(jobMeters.submit?.requests ?? {})}; the benchmark's own polling (left out): ${sum(jobMeters.bench?.requests ?? {})} requests`,
    );
    console.log(`    D1 statements that wrote rows (the farm's, per frame: calls / rows written / rows read):`);
    const writers = Object.entries(jobMeters.farm?.d1.bySql ?? {})
      .filter(([, m]) => m.rowsWritten > 0)
      .sort((a, b) => b[1].rowsWritten - a[1].rowsWritten);
    for (const [sql, m] of writers)
      console.log(
        `    ${(m.calls / frames).toFixed(3).padStart(7)} ${(m.rowsWritten / frames).toFixed(3).padStart(7)} ${(m.rowsRead / frames).toFixed(2).padStart(8)}  ${sql.slice(0, 160)}`,
      );
    const readOnly = Object.values(jobMeters.farm?.d1.bySql ?? {}).filter((m) => m.rowsWritten === 0);
    console.log(
      `    and ${readOnly.reduce((n, m) => n + m.calls, 0)} calls of ${readOnly.length} statements that wrote nothing (${readOnly.reduce((n, m) => n + m.rowsRead, 0)} rows read)`,
    );
    console.log(
      `    storage: ${jobCommits.commits} commits, ${jobCommits.dataCommits} changed data, ${jobCommits.rowsChanged} rows changed (R2 metadata and DOs included)`,
    );
    console.log(`idle: ${idleMeasured.toFixed(1)} s, ${cronRuns} cron run(s); the farm's requests by route:`);
    for (const [route, n] of Object.entries(idleMeters.farm?.requests ?? {}).sort((a, b) => b[1] - a[1])) console.log(`    ${route.padEnd(48)} ${n}`);
    const cronD1 = idleMeters.cron?.d1;
    console.log(
      `    DO calls: ${JSON.stringify(idleMeters.farm?.durableObjectRequests ?? {})}; cron: ${cronD1?.statements ?? 0} D1 statements, ${cronD1?.rowsRead ?? 0} rows read, ${cronD1?.rowsWritten ?? 0} written, R2 ${JSON.stringify(idleMeters.cron?.r2.byOperation ?? {})}`,
    );
    for (const [sql, m] of Object.entries(cronD1?.bySql ?? {}).filter(([, m]) => m.rowsWritten > 0))
      console.log(`      cron wrote ${m.rowsWritten} rows in ${m.calls} calls: ${sql.slice(0, 120)}`);
    console.log(`    storage: ${idleCommits.commits} commits, ${idleCommits.dataCommits} changed data (cron's included)`);

    // A 10-node farm rendering 10,000 frames a day, each node idle all day besides (an upper
    // bound: a node rendering is not also idle), 10 jobs of 1,000 frames, the cron every minute.
    // A Durable Object that waiting nodes call is held in memory while any node waits: all day, at
    // 128 MB (duration is not measurable locally; this is the most it can be for one object).
    const doHeldGbSPerHour = perIdleNodeHour.doRequests > 0 ? 3_600 * 0.128 : 0;
    const farmPerDay = {
      ...add(scale(per1000Frames, 10), scale(perIdleNodeHour, 10 * 24), scale(cronPerHour, 24), scale(perSubmission, 10)),
      doDurationGbS: doHeldGbSPerHour * 24,
    };
    const units = Object.keys(UNIT_NAMES) as Unit[];
    const overFree = units.filter((u) => farmPerDay[u] > RATES[u].freePerDay);
    const paidPerMonth = units.map((u) => (Math.max(0, farmPerDay[u] * 30 - RATES[u].paidIncludedPerMonth) / 1e6) * RATES[u].paidPerMillion);
    const paidPerMonthUsd = RATES.workersPaidBasePerMonth + paidPerMonth.reduce((a, b) => a + b, 0);

    const cell = (n: number) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(n >= 10 ? 1 : 2));
    const row = (cells: string[]) => `| ${cells.join(' | ')} |`;
    console.log('\nresults (per 1,000 frames: measured x 1000/frames; per idle node-hour and cron per hour: a measured minute x 60):');
    console.log(
      row([
        'unit',
        'per 1,000 frames',
        'per submission',
        'per idle node-hour',
        'cron per hour',
        '10 nodes, 10k frames/day',
        'Free plan per day',
        'Paid, $ per month',
      ]),
    );
    console.log(row(Array(8).fill('---')));
    units.forEach((u, i) => {
      const measured =
        u === 'doDurationGbS'
          ? ['-', '-', `${cell(doHeldGbSPerHour)} (estimate: held all hour, per farm)`, '-']
          : [per1000Frames, perSubmission, perIdleNodeHour, cronPerHour].map((x) => cell(x[u]));
      console.log(
        row([
          UNIT_NAMES[u],
          ...measured,
          cell(farmPerDay[u]),
          `${cell(RATES[u].freePerDay)}${farmPerDay[u] > RATES[u].freePerDay ? ' EXCEEDED' : ''}`,
          paidPerMonth[i]!.toFixed(2),
        ]),
      );
    });
    console.log(
      row([
        'local storage commits (one per D1 query; not billed as such)',
        ...[per1000Frames, '-', perIdleNodeHour, '-'].map((x) => (typeof x === 'string' ? x : cell(x.commits))),
        '-',
        '-',
        '-',
      ]),
    );
    console.log(
      row([
        'of them, commits that changed data',
        ...[per1000Frames, '-', perIdleNodeHour, '-'].map((x) => (typeof x === 'string' ? x : cell(x.dataCommits))),
        '-',
        '-',
        '-',
      ]),
    );
    console.log('');
    report('10-node farm, 10,000 frames/day on Free', overFree.length === 0 ? 'fits' : `does not fit: ${overFree.map((u) => UNIT_NAMES[u]).join(', ')}`);
    report(
      'same farm on Workers Paid',
      paidPerMonthUsd,
      '$/month',
      `$${RATES.workersPaidBasePerMonth} base included; Workers CPU time and R2 storage not counted`,
    );
    return { per1000Frames, perSubmission, perIdleNodeHour, cronPerHour, farmPerDay, fitsFreePlan: overFree.length === 0, paidPerMonthUsd };
  } finally {
    counter.stop();
    await node.stop();
    await master.stop();
  }
}

if (isMain(import.meta)) {
  const { values } = parseArgs({
    options: {
      frames: { type: 'string', default: '8' },
      'chunk-size': { type: 'string' },
      'idle-seconds': { type: 'string', default: '60' },
    },
  });
  runBench(async () => {
    console.log(`machine: ${machineInfo()}`);
    await benchCost({
      frames: Number(values.frames),
      chunkSize: values['chunk-size'] ? Number(values['chunk-size']) : undefined,
      idleSeconds: Number(values['idle-seconds']),
    });
  });
}
