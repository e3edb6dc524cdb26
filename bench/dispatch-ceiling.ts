/**
 * What benchmark 2 (dispatch) can reach at best under `wrangler dev` on this machine: a bare
 * Worker (bench/dispatch-ceiling-worker.ts) answers requests that each do only the storage step
 * of one design (a D1 read, a D1 write, a D1 batch of ten, a Durable Object RPC in memory or in
 * its SQLite storage, an R2 put of a tiny frame), with the same simulated nodes as
 * bench/dispatch.ts. Each rate is printed against the same Worker's `GET /noop`, measured before
 * and after in the same run. A request that makes one such call of its own cannot beat its
 * line, whatever the code around it does; group commit (edge/batch-together.ts) lets concurrent
 * claims share one D1 batch, which is how the master's claims get above the one-read line.
 * A whole task (benchmark 2b) is four requests, one of which stores a frame in R2: the script
 * prints the best ratio that allows, with the other three as cheap as the no-op.
 *
 *   node bench/dispatch-ceiling.ts [--nodes 32] [--seconds 3] [--rounds 3]
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { closedLoop, isMain, machineInfo, median, pool, postJson, report, runBench, send, startBareWorker, tempDir, TINY_PNG } from './lib.ts';

const ROUTES = [
  ['/json', 'read and answer JSON'],
  ['/d1-read', 'one D1 read'],
  ['/d1-write', 'one D1 write'],
  ['/d1-batch', 'one D1 batch of 10 statements'],
  ['/do-memory', 'one Durable Object RPC, in memory'],
  ['/do-sql', 'one Durable Object RPC, SQLite write'],
  ['/r2-put', 'store a 1x1 PNG in R2'],
] as const;

export interface CeilingResult {
  noopRate: number;
  /** Rate of each route over its round's no-op rate (median of the rounds). */
  ratios: Record<string, number>;
}

export async function benchDispatchCeiling(options: { nodes: number; seconds: number; rounds: number }): Promise<CeilingResult> {
  const { nodes, seconds, rounds } = options;
  console.log(`dispatch ceiling: ${nodes} simulated nodes, ${seconds} s per route, ${rounds} rounds, a bare Worker under wrangler dev`);
  const dir = tempDir('bench-dispatch-ceiling');
  const worker = await startBareWorker({
    dir,
    name: 'dispatch-ceiling',
    main: 'dispatch-ceiling-worker.ts',
    persistDir: join(dir, 'state'),
    toml: [
      '[[d1_databases]]',
      'binding = "DB"',
      'database_name = "dispatch-ceiling"',
      'database_id = "00000000-0000-0000-0000-000000000000"',
      '[[durable_objects.bindings]]',
      'name = "CURSOR"',
      'class_name = "Cursor"',
      '[[r2_buckets]]',
      'binding = "FILES"',
      'bucket_name = "dispatch-ceiling"',
      '[[migrations]]',
      'tag = "v1"',
      'new_sqlite_classes = ["Cursor"]',
    ],
  });
  const http = pool(worker.url, nodes);
  try {
    const setup = await postJson(http, '/setup', {});
    if (setup.status !== 200) throw new Error(`setup answered ${setup.status}: ${setup.text}`);
    const noop = async () => {
      const { status } = await send(http, 'GET', '/noop');
      if (status !== 200) throw new Error(`GET /noop answered ${status}`);
      return true;
    };
    const call = (route: string) => async (loop: number) => {
      const { status, text } =
        route === '/r2-put'
          ? await send(http, 'PUT', route, TINY_PNG, { 'content-type': 'image/png' })
          : await postJson(http, route, { worker_id: `sim-${loop}` });
      if (status !== 200 && status !== 201) throw new Error(`${route} answered ${status}: ${text.slice(0, 200)}`);
      return true;
    };
    // Warm-up: connections, JIT, SQLite pages, the Durable Object's start.
    await closedLoop(nodes, 1_000, noop);
    for (const [route] of ROUTES) await closedLoop(nodes, 300, call(route));

    // Rounds of: no-op, every route, no-op; each rate against its round's no-op, median over rounds.
    const noops: number[] = [];
    const perRoute = new Map<string, { rates: number[]; ratios: number[] }>(ROUTES.map(([route]) => [route, { rates: [], ratios: [] }]));
    for (let round = 0; round < rounds; round++) {
      const before = (await closedLoop(nodes, seconds * 1000, noop)).rate;
      const rates: number[] = [];
      for (const [route] of ROUTES) rates.push((await closedLoop(nodes, seconds * 1000, call(route))).rate);
      const after = (await closedLoop(nodes, seconds * 1000, noop)).rate;
      noops.push(before, after);
      ROUTES.forEach(([route], i) => {
        perRoute.get(route)!.rates.push(rates[i]!);
        perRoute.get(route)!.ratios.push(rates[i]! / ((before + after) / 2));
      });
    }
    const noopRate = median(noops);

    console.log(`results (median of ${rounds} rounds):`);
    report('GET /noop', noopRate, 'req/s', `${Math.min(...noops).toFixed(0)}-${Math.max(...noops).toFixed(0)}`);
    const ratios: Record<string, number> = {};
    for (const [route, what] of ROUTES) {
      const { rates, ratios: each } = perRoute.get(route)!;
      ratios[route] = median(each);
      report(
        `${route}: ${what}`,
        `${median(rates).toFixed(0)} req/s = ${ratios[route]!.toFixed(3)}x`,
        '',
        `of the no-op; rounds ${each.map((r) => r.toFixed(2)).join(', ')}`,
      );
    }
    // A whole task is four requests, each at least a no-op, and one of them stores the frame.
    const wholeTask = 1 / (3 + 1 / ratios['/r2-put']!);
    report('(b) whole tasks / no-op can be at most', wholeTask, '', 'three no-ops and one R2 put per task; goal 0.2');
    return { noopRate, ratios };
  } finally {
    await http.close();
    await worker.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (isMain(import.meta)) {
  const { values } = parseArgs({
    options: { nodes: { type: 'string', default: '32' }, seconds: { type: 'string', default: '3' }, rounds: { type: 'string', default: '3' } },
  });
  runBench(async () => {
    console.log(`machine: ${machineInfo()}`);
    await benchDispatchCeiling({ nodes: Number(values.nodes), seconds: Number(values.seconds), rounds: Number(values.rounds) });
  });
}
