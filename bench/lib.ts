/**
 * Shared parts of the benchmarks: the real master (`wrangler dev`, as `npm run dev` runs it) and
 * real render nodes from the end-to-end harness, a closed-loop load generator, and reporting.
 *
 * Benchmarks are scripts, not tests: each prints what it measured and the ratios against a
 * baseline measured in the same run, on the same machine, so the ratios mean something even on a
 * machine that other work is slowing down.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus, loadavg, totalmem } from 'node:os';
import { Pool, WebSocket } from 'undici';
import { authHeaders, freePort, killGroup, ROOT, startMaster, waitFor, type Master } from '../test/e2e/harness.ts';
import { descendants } from '../test/e2e/upload-measure.ts';

export type { RenderNode } from '../test/e2e/harness.ts';
export { authHeaders, BLENDER, makeScene, startMaster, startNode, submitJob, tempDir, waitFor, waitForJob } from '../test/e2e/harness.ts';
export { reportWritesByKind, watchStorage, type StorageWrites } from '../test/e2e/storage-watch.ts';

/** A 1x1 PNG: the smallest real frame, as simulated nodes upload it. */
export const TINY_PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');

/** The median of some measurements (the upper middle of an even count). */
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Master vars for benchmarks: no rate limit (one simulated node makes thousands of requests). */
export const BENCH_MASTER_VARS = { RATE_LIMIT_PER_MINUTE: '0' };

/** A line describing the machine, for the README: CPU, cores, memory, load and versions. */
export function machineInfo(): string {
  const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU';
  let blender = 'no Blender';
  try {
    blender =
      /Blender [\d.]+/.exec(execFileSync(process.env.BLENDER ?? 'blender', ['-b', '--factory-startup', '--version'], { encoding: 'utf8' }))?.[0] ?? blender;
  } catch {
    // Benchmarks without Blender still describe the machine.
  }
  const [one, five] = loadavg();
  return `${cpus().length} cores (${cpu}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Node ${process.versions.node}, ${blender}, load average ${one!.toFixed(1)}/${five!.toFixed(1)} (1/5 min) at start`;
}

/** Prints a result line: `name: value unit` with an optional note. */
export function report(name: string, value: number | string, unit = '', note = ''): void {
  const shown = typeof value === 'number' ? (Number.isInteger(value) ? String(value) : value.toFixed(value < 10 ? 3 : 1)) : value;
  console.log(`  ${name.padEnd(44)} ${shown}${unit ? ` ${unit}` : ''}${note ? `   (${note})` : ''}`);
}

/** Prints a ratio against its goal and says whether it met it. */
export function verdict(name: string, value: number, goal: string, met: boolean): boolean {
  console.log(`  ${name.padEnd(44)} ${value.toFixed(3)}   goal ${goal}: ${met ? 'MET' : 'NOT MET'}`);
  return met;
}

export interface LoadResult {
  /** Completed iterations per second. */
  rate: number;
  count: number;
  errors: number;
  firstError?: string;
  seconds: number;
}

/**
 * Runs `concurrency` loops for `durationMs`, each calling `iteration(loopIndex)` back to back
 * (a closed loop: a new request only when the previous one answered, like real nodes). An
 * iteration returns false when it did no work (counted neither as done nor as an error).
 */
export async function closedLoop(concurrency: number, durationMs: number, iteration: (loop: number) => Promise<boolean>): Promise<LoadResult> {
  let count = 0;
  let errors = 0;
  let firstError: string | undefined;
  const started = performance.now();
  const deadline = started + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, loop) => {
      while (performance.now() < deadline) {
        try {
          if (await iteration(loop)) count++;
        } catch (err) {
          errors++;
          firstError ??= (err as Error).message;
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { rate: count / seconds, count, errors, firstError, seconds };
}

/** A keep-alive connection pool to the master. */
export function pool(url: string, connections: number): Pool {
  return new Pool(url, { connections, pipelining: 1, keepAliveTimeout: 30_000 });
}

/** Sends a request and returns status and body text; throws on a 5xx. */
export async function send(
  p: Pool,
  method: 'GET' | 'POST' | 'PUT',
  path: string,
  body?: string | Uint8Array,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string }> {
  const response = await p.request({
    method,
    path,
    body,
    headers: body === undefined ? headers : { 'content-length': String(typeof body === 'string' ? Buffer.byteLength(body) : body.length), ...headers },
  });
  const text = await response.body.text();
  if (response.statusCode >= 500) throw new Error(`${method} ${path}: ${response.statusCode} ${text.slice(0, 200)}`);
  return { status: response.statusCode, text };
}

/** POSTs JSON. */
export function postJson(p: Pool, path: string, body: unknown) {
  return send(p, 'POST', path, JSON.stringify(body), { 'content-type': 'application/json' });
}

/** Resident memory of one process in MB; 0 if it is gone. */
export function rssMb(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
    return kb ? Number(kb) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** The pid of the workerd process serving the Worker (the one with the most memory under wrangler). */
function workerdPids(wranglerPid: number): number[] {
  return descendants(wranglerPid).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'workerd';
    } catch {
      return false;
    }
  });
}

/**
 * `wrangler dev` runs two workerd processes: a proxy that listens on the dev port and forwards
 * each request (it holds requests while the Worker reloads), and the runtime that runs the
 * Worker with local D1 and R2. A deployed Worker has neither the proxy nor local R2 in its
 * process. Tells them apart by the socket the proxy listens on.
 */
export function workerdByRole(wranglerPid: number, port: number): { proxy: number[]; runtime: number[] } {
  const proxy: number[] = [];
  const runtime: number[] = [];
  for (const pid of workerdPids(wranglerPid)) {
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    (cmdline.includes(`--socket-addr=entry=127.0.0.1:${port}\0`) ? proxy : runtime).push(pid);
  }
  return { proxy, runtime };
}

/**
 * The Worker's own V8 isolate under `wrangler dev`, through the DevTools protocol on wrangler's
 * `--inspector-port`: `heap()` answers the isolate's JS heap and the ArrayBuffer memory it holds
 * (MB), which is what the Workers memory limit (128 MB per isolate) is about, apart from the
 * runtime's own buffers, local R2 and D1 and the dev proxy that workerd's RSS also counts.
 * `heap({ live: true })` collects garbage first, so it answers what the isolate still holds:
 * garbage (spent stream chunks) waits for V8's own schedule and inflates the plain figure.
 */
export async function workerInspector(
  wranglerPid: number,
): Promise<{ heap(options?: { live?: boolean }): Promise<{ jsMb: number; buffersMb: number }>; close(): void }> {
  // A connection made while wrangler is still settling the Worker can stay silent: a call that
  // gets no answer in 10 s counts as a failed connection, and a fresh one is tried.
  for (let attempt = 1; ; attempt++) {
    try {
      return await connectInspector(wranglerPid);
    } catch (err) {
      if (attempt === 5) throw err;
      await new Promise((r) => setTimeout(r, 2_000));
    }
  }
}

async function connectInspector(
  wranglerPid: number,
): Promise<{ heap(options?: { live?: boolean }): Promise<{ jsMb: number; buffersMb: number }>; close(): void }> {
  const args = readFileSync(`/proc/${wranglerPid}/cmdline`, 'utf8').split('\0');
  const port = args[args.indexOf('--inspector-port') + 1];
  const [target] = (await (await fetch(`http://127.0.0.1:${port}/json`)).json()) as { webSocketDebuggerUrl: string }[];
  // wrangler's inspector proxy only accepts the DevTools origins.
  const ws = new WebSocket(target!.webSocketDebuggerUrl, { headers: { origin: 'https://devtools.devprod.cloudflare.dev' } } as never);
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error(`connecting to the Worker's inspector on port ${port}`));
  });
  let lastId = 0;
  const pending = new Map<number, (result: unknown) => void>();
  ws.addEventListener('message', (event: { data: unknown }) => {
    const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown };
    if (message.id === undefined) return;
    pending.get(message.id)?.(message.result);
    pending.delete(message.id);
  });
  const call = <T>(method: string) =>
    new Promise<T>((resolve, reject) => {
      const id = ++lastId;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`the Worker's inspector did not answer ${method} in 10 s`));
      }, 10_000);
      pending.set(id, (result) => {
        clearTimeout(timer);
        resolve(result as T);
      });
      ws.send(JSON.stringify({ id, method }));
    });
  try {
    await call('Runtime.enable');
  } catch (err) {
    ws.close();
    throw err;
  }
  return {
    heap: async (options) => {
      if (options?.live) await call('HeapProfiler.collectGarbage');
      const usage = await call<{ usedSize: number; totalSize: number; backingStorageSize?: number }>('Runtime.getHeapUsage');
      return { jsMb: (options?.live ? usage.usedSize : usage.totalSize) / 2 ** 20, buffersMb: (usage.backingStorageSize ?? 0) / 2 ** 20 };
    },
    close: () => ws.close(),
  };
}

/** Runs `main` and exits with its code, printing a failure's stack. */
export function runBench(main: () => Promise<number | void>): void {
  main().then(
    (code) => process.exit(code ?? 0),
    (err) => {
      console.error((err as Error).stack ?? err);
      process.exit(1);
    },
  );
}

/** True when this module is the script node was started with. */
export function isMain(meta: ImportMeta): boolean {
  return process.argv[1] !== undefined && new URL(meta.url).pathname === process.argv[1];
}

/** Kernel clock ticks per second, the unit of CPU times in /proc (100 on Linux). */
const CLOCK_TICKS = 100;

/** CPU seconds of one process from /proc/PID/stat: its own user+system time, and its reaped children's. */
export function processCpuSeconds(pid: number): { own: number; children: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)": state is field 3; utime, stime, cutime, cstime are fields 14-17.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const [utime, stime, cutime, cstime] = [11, 12, 13, 14].map((i) => Number(fields[i]));
    return { own: (utime! + stime!) / CLOCK_TICKS, children: (cutime! + cstime!) / CLOCK_TICKS };
  } catch {
    return { own: 0, children: 0 };
  }
}

/**
 * CPU seconds used so far by a process tree: every live process's own time plus the time of the
 * children it has reaped (which no longer show up as processes).
 */
export function treeCpuSeconds(pid: number): number {
  let total = 0;
  for (const p of [pid, ...descendants(pid)]) {
    const { own, children } = processCpuSeconds(p);
    total += own + children;
  }
  return total;
}

/** CPU seconds of this process's reaped children (e.g. a Blender it ran and waited for). */
export function reapedChildrenCpuSeconds(): number {
  return processCpuSeconds(process.pid).children;
}

export interface BareWorker {
  url: string;
  port: number;
  /** The `wrangler dev` process (its group holds both workerd processes). */
  child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Starts a bare Worker of bench/ under `wrangler dev` (as the master runs locally), to measure
 * what the platform itself costs apart from the master's code. `toml` adds bindings to the
 * generated wrangler.toml; the same `persistDir` keeps local D1 and R2 between starts.
 */
export async function startBareWorker(opts: { dir: string; name: string; main: string; persistDir: string; toml?: string[] }): Promise<BareWorker> {
  const config = join(opts.dir, `${opts.name}.wrangler.toml`);
  writeFileSync(
    config,
    [
      `name = "${opts.name}"`,
      `main = "${join(ROOT, 'bench', opts.main)}"`,
      'compatibility_date = "2026-10-20"',
      'compatibility_flags = ["nodejs_compat"]',
      'send_metrics = false',
      ...(opts.toml ?? []),
    ].join('\n'),
  );
  const port = await freePort();
  const wrangler = join(ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js');
  const child = spawn(
    process.execPath,
    [
      wrangler,
      'dev',
      '-c',
      config,
      '--port',
      String(port),
      '--ip',
      '127.0.0.1',
      '--inspector-port',
      String(await freePort()),
      '--persist-to',
      opts.persistDir,
      '--log-level',
      'warn',
    ],
    { cwd: opts.dir, env: { ...process.env, CI: 'true', WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1' }, detached: true, stdio: 'ignore' },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`the ${opts.name} Worker to answer`, async () => (await fetch(`${url}/nothing`)).status === 404, 60_000);
  return { url, port, child, stop: () => killGroup(child) };
}

/**
 * Waits for a submitted job's first claim and the claiming node's `running` report, polling the
 * job's tasks every 10 ms (a task row exists once a node claimed it; its message turns to
 * "rendering" when the node reports it runs). Times are in ms from `since` (a `performance.now()`);
 * `token` is a submitter token for a master that requires one.
 */
export async function waitForPickup(
  masterUrl: string,
  jobId: string,
  since: number,
  timeoutMs = 60_000,
  token?: string,
): Promise<{ claimedMs: number; runningMs: number }> {
  let claimedMs: number | undefined;
  for (;;) {
    const { tasks } = (await (await fetch(`${masterUrl}/jobs/${jobId}/tasks`, { headers: authHeaders(token) })).json()) as {
      tasks: { message: string | null; status: string }[];
    };
    if (tasks.length > 0) claimedMs ??= performance.now() - since;
    if (tasks.some((t) => t.message === 'rendering' || t.status === 'completed')) {
      const runningMs = performance.now() - since;
      return { claimedMs: claimedMs ?? runningMs, runningMs };
    }
    if (performance.now() - since > timeoutMs) throw new Error(`no node picked job ${jobId} up within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Starts the master as `startMaster` does, but from bench/metered-master.ts (the same Worker with
 * meters on its requests, D1 rows, R2 operations and Durable Object calls) and with wrangler's
 * `--test-scheduled`, so `GET /__scheduled` runs the cron handler as the cron trigger would.
 */
export function startMeteredMaster(opts: { name: string; vars?: Record<string, string> }): Promise<Master> {
  return startMaster({ ...opts, wranglerArgs: [join(ROOT, 'bench', 'metered-master.ts'), '--test-scheduled'] });
}
