/**
 * Shared parts of the benchmarks: the real master (`wrangler dev`, as `npm run dev` runs it) and
 * real render nodes from the end-to-end harness, a closed-loop load generator, and reporting.
 *
 * Benchmarks are scripts, not tests: each prints what it measured and the ratios against a
 * baseline measured in the same run, on the same machine, so the ratios mean something even on a
 * machine that other work is slowing down.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, createWriteStream, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { cpus, loadavg, totalmem } from 'node:os';
import { Pool, WebSocket } from 'undici';
import { freePort, killGroup, OUTPUT_DIR, ROOT, tempDir, waitFor, type Master } from '../test/e2e/harness.ts';

export type { RenderNode } from '../test/e2e/harness.ts';
export { BLENDER, makeScene, startMaster, startNode, submitJob, tempDir, waitFor, waitForJob, jobStatus, ROOT } from '../test/e2e/harness.ts';

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
    blender = /Blender [\d.]+/.exec(execFileSync(process.env.BLENDER ?? 'blender', ['-b', '--factory-startup', '--version'], { encoding: 'utf8' }))?.[0] ?? blender;
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

/** Resident memory of a process and all its descendants, in MB (Linux /proc). */
export function treeRssMb(pid: number): number {
  let total = 0;
  for (const p of [pid, ...descendants(pid)]) total += rssMb(p);
  return total;
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

/** Every descendant pid of `pid`. */
export function descendants(pid: number): number[] {
  let out = '';
  try {
    out = execFileSync('ps', ['-e', '-o', 'pid=,ppid='], { encoding: 'utf8' });
  } catch {
    return [];
  }
  const children = new Map<number, number[]>();
  for (const line of out.trim().split('\n')) {
    const [child, parent] = line.trim().split(/\s+/).map(Number);
    if (!children.has(parent!)) children.set(parent!, []);
    children.get(parent!)!.push(child!);
  }
  const found: number[] = [];
  const stack = [...(children.get(pid) ?? [])];
  while (stack.length) {
    const next = stack.pop()!;
    found.push(next);
    stack.push(...(children.get(next) ?? []));
  }
  return found;
}

/** The pid of the workerd process serving the Worker (the one with the most memory under wrangler). */
export function workerdPids(wranglerPid: number): number[] {
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
 */
export async function workerInspector(wranglerPid: number): Promise<{ heap(): Promise<{ jsMb: number; buffersMb: number }>; close(): void }> {
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
    new Promise<T>((resolve) => {
      const id = ++lastId;
      pending.set(id, resolve as (result: unknown) => void);
      ws.send(JSON.stringify({ id, method }));
    });
  await call('Runtime.enable');
  return {
    heap: async () => {
      const usage = await call<{ totalSize: number; backingStorageSize?: number }>('Runtime.getHeapUsage');
      return { jsMb: usage.totalSize / 2 ** 20, buffersMb: (usage.backingStorageSize ?? 0) / 2 ** 20 };
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
    [wrangler, 'dev', '-c', config, '--port', String(port), '--ip', '127.0.0.1', '--inspector-port', String(await freePort()), '--persist-to', opts.persistDir, '--log-level', 'warn'],
    { cwd: opts.dir, env: { ...process.env, CI: 'true', WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1' }, detached: true, stdio: 'ignore' },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`the ${opts.name} Worker to answer`, async () => (await fetch(`${url}/nothing`)).status === 404, 60_000);
  return { url, port, child, stop: () => killGroup(child) };
}

/** One SQLite file of the local master's state (D1, a Durable Object, R2's metadata), watched for commits. */
interface WatchedFile {
  /** The path under the persist dir's `v3/`, e.g. `d1/miniflare-D1DatabaseObject/<hash>.sqlite`. */
  label: string;
  db: import('node:sqlite').DatabaseSync;
  shmPath: string;
  dataVersion: number;
  /** The WAL index's commit counter at the last poll; null before the file has a -shm. */
  iChange: number | null;
  commits: number;
  dataVersionChanges: number;
}

export interface StorageCommits {
  /** Commits to the master's own storage (D1, Durable Objects, R2), from the WAL index's commit counter. */
  commits: number;
  /** Polls that saw `PRAGMA data_version` change in those files: a lower bound (two commits within one poll count once). */
  dataVersionChanges: number;
  /** Commits to files only a local `wrangler dev` has (its trace store, miniflare's own metadata): not counted above. */
  localOnlyCommits: number;
  /** Per file that changed, with its kind (`storageKind`). */
  byFile: { label: string; kind: string; localOnly: boolean; commits: number; dataVersionChanges: number }[];
}

export interface StorageCommitCounter {
  /** The commits since the counter started (or since the last `reset`). */
  read(): StorageCommits;
  /** Starts counting again from zero. */
  reset(): void;
  stop(): void;
}

// node:sqlite is flagged experimental on Node 22 and warns once when loaded; the warning says nothing to a benchmark reader.
function loadSqlite(): typeof import('node:sqlite') {
  const emitWarning = process.emitWarning;
  process.emitWarning = (() => {}) as typeof process.emitWarning;
  try {
    return createRequire(import.meta.url)('node:sqlite') as typeof import('node:sqlite');
  } finally {
    process.emitWarning = emitWarning;
  }
}

/** The WAL index header's `iChange` (bytes 8-11 of the -shm file, native byte order): +1 per commit. */
function readWalCommitCounter(shmPath: string): number | null {
  let fd: number | undefined;
  try {
    fd = openSync(shmPath, 'r');
    const header = Buffer.alloc(96);
    if (readSync(fd, header, 0, 96, 0) < 96) return null;
    // SQLite writes the header twice (copy 2 first); readers trust it when both copies agree.
    if (!header.subarray(0, 48).equals(header.subarray(48, 96)) || header[12] !== 1) return null;
    return header.readUInt32LE(8);
  } catch {
    return null;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function sqliteFiles(dir: string): string[] {
  try {
    return (readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith('.sqlite')).map((f) => join(dir, f));
  } catch {
    return [];
  }
}

/**
 * Counts the storage commits (transactions that wrote something) the local master makes, in
 * every SQLite file under `<persistDir>/v3`: D1, each Durable Object, R2's metadata. Each file
 * is polled every `everyMs` from a read-only connection of its own, two ways:
 *
 * - the WAL index's commit counter (`iChange` in the -shm file's header), which SQLite bumps
 *   once per commit in WAL mode (workerd keeps these files in WAL mode): exact, whatever the
 *   poll interval, since it is a counter and not a flag;
 * - `PRAGMA data_version`, which changes when another connection committed since the last poll:
 *   two commits within one poll count once, so it is a lower bound, kept as a cross-check.
 *
 * Files that appear while it runs (a Durable Object's first write) are found by a rescan every
 * half second and counted from their first commit.
 */
export function countStorageCommits(persistDir: string, everyMs = 25): StorageCommitCounter {
  const { DatabaseSync } = loadSqlite();
  const root = join(persistDir, 'v3');
  const files = new Map<string, WatchedFile>();
  // Files there at the start are counted from now; files created later, from their first commit.
  const initial = new Set(sqliteFiles(root));
  // Reads are synchronous: a busy file is skipped (never waited for) and read again at the next poll.
  const readDataVersion = (db: import('node:sqlite').DatabaseSync): number | null => {
    try {
      return (db.prepare('PRAGMA data_version').get() as { data_version: number }).data_version;
    } catch {
      return null;
    }
  };
  const watch = (path: string) => {
    if (files.has(path)) return;
    let db: import('node:sqlite').DatabaseSync;
    try {
      db = new DatabaseSync(path, { readOnly: true });
    } catch {
      return; // being created: the next rescan tries again
    }
    const shmPath = `${path}-shm`;
    // A file without a -shm yet starts its counter at 0 when it gets one.
    const iChange = !initial.has(path) || !existsSync(shmPath) ? 0 : readWalCommitCounter(shmPath);
    files.set(path, { label: relative(root, path), db, shmPath, dataVersion: readDataVersion(db) ?? 0, iChange, commits: 0, dataVersionChanges: 0 });
  };
  for (const path of initial) watch(path);
  const poll = () => {
    for (const file of files.values()) {
      const dataVersion = readDataVersion(file.db);
      if (dataVersion !== null) {
        if (dataVersion !== file.dataVersion) file.dataVersionChanges++;
        file.dataVersion = dataVersion;
      }
      const iChange = readWalCommitCounter(file.shmPath);
      if (iChange === null) continue;
      // The counter restarts when the WAL index is rebuilt (every connection closed): count from there.
      if (file.iChange !== null) file.commits += iChange >= file.iChange ? iChange - file.iChange : iChange;
      file.iChange = iChange;
    }
  };
  const pollTimer = setInterval(poll, everyMs);
  const scanTimer = setInterval(() => {
    for (const path of sqliteFiles(root)) watch(path);
  }, 500);
  return {
    read() {
      poll();
      const byFile = [...files.values()]
        .filter((f) => f.commits > 0 || f.dataVersionChanges > 0)
        .map(({ label, commits, dataVersionChanges }) => ({ label, kind: storageKind(label), localOnly: storageKind(label).startsWith('local'), commits, dataVersionChanges }));
      const sum = (files: typeof byFile, key: 'commits' | 'dataVersionChanges') => files.reduce((total, f) => total + f[key], 0);
      const billed = byFile.filter((f) => !f.localOnly);
      return {
        commits: sum(billed, 'commits'),
        dataVersionChanges: sum(billed, 'dataVersionChanges'),
        localOnlyCommits: sum(byFile.filter((f) => f.localOnly), 'commits'),
        byFile,
      };
    },
    reset() {
      poll();
      for (const file of files.values()) {
        file.commits = 0;
        file.dataVersionChanges = 0;
      }
    },
    stop() {
      clearInterval(pollTimer);
      clearInterval(scanTimer);
      for (const file of files.values()) file.db.close();
    },
  };
}

/**
 * What one of the master's SQLite files is: `d1`, `durable object <class>`, `r2 metadata`, or
 * `local: ...` for files a deployed master does not have (miniflare's own bookkeeping, the local
 * trace store that records every request).
 */
export function storageKind(label: string): string {
  const [kind, namespace, file] = label.split(/[\\/]/);
  if (file === 'metadata.sqlite') return `local: miniflare metadata (${kind})`;
  if (kind === 'd1') return 'd1';
  if (kind === 'r2') return 'r2 metadata';
  if (kind === 'do') return `durable object ${namespace?.replace(/^.*-/, '') ?? ''}`;
  return `local: ${kind}`;
}

/** Prints the commits of `StorageCommits.byFile`, summed by kind of storage. */
export function reportCommitsByKind(commits: StorageCommits, indent = '    '): void {
  const byKind = new Map<string, { commits: number; dataVersionChanges: number }>();
  for (const f of commits.byFile) {
    const sum = byKind.get(f.kind) ?? { commits: 0, dataVersionChanges: 0 };
    sum.commits += f.commits;
    sum.dataVersionChanges += f.dataVersionChanges;
    byKind.set(f.kind, sum);
  }
  if (byKind.size === 0) console.log(`${indent}no commits`);
  for (const [kind, sum] of byKind) {
    // A file created during the run changes data_version once as it is set up; say nothing of those.
    if (sum.commits === 0 && kind.startsWith('local')) continue;
    console.log(`${indent}${kind.padEnd(42)} ${String(sum.commits).padStart(6)} commits   (data_version changed in ${sum.dataVersionChanges} polls)`);
  }
}

/**
 * Waits for a submitted job's first claim and the claiming node's `running` report, polling the
 * job's tasks every 10 ms (a task row exists once a node claimed it; its message turns to
 * "rendering" when the node reports it runs). Times are in ms from `since` (a `performance.now()`).
 */
export async function waitForPickup(masterUrl: string, jobId: string, since: number, timeoutMs = 60_000): Promise<{ claimedMs: number; runningMs: number }> {
  let claimedMs: number | undefined;
  for (;;) {
    const { tasks } = (await (await fetch(`${masterUrl}/jobs/${jobId}/tasks`)).json()) as { tasks: { message: string | null; status: string }[] };
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
export async function startMeteredMaster(opts: { name: string; vars?: Record<string, string> }): Promise<Master> {
  const port = await freePort();
  const persistDir = tempDir(`${opts.name}-state`);
  const wrangler = join(ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js');
  const env = { ...process.env, CI: 'true', CLOUDFLARE_CF_FETCH_ENABLED: 'false', WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1' };
  const migrate = spawnSync(process.execPath, [wrangler, 'd1', 'migrations', 'apply', 'DB', '--local', '--persist-to', persistDir], { cwd: ROOT, env, encoding: 'utf8' });
  if (migrate.status !== 0) throw new Error(`applying migrations failed: ${migrate.stderr}${migrate.stdout}`);
  const vars = Object.entries({ FARM_ALLOW_ANONYMOUS: 'true', ...opts.vars }).flatMap(([k, v]) => ['--var', `${k}:${v}`]);
  const child = spawn(
    process.execPath,
    [wrangler, 'dev', join(ROOT, 'bench', 'metered-master.ts'), '--port', String(port), '--ip', '127.0.0.1', '--inspector-port', String(await freePort()),
      '--persist-to', persistDir, '--log-level', 'warn', '--test-scheduled', ...vars],
    { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  mkdirSync(join(OUTPUT_DIR, 'logs'), { recursive: true });
  const log = createWriteStream(join(OUTPUT_DIR, 'logs', `master-${opts.name}.log`), { flags: 'a' });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  const url = `http://127.0.0.1:${port}`;
  await waitFor('the metered master to answer /time', async () => (await fetch(`${url}/time`)).ok, 60_000);
  return { url, port, persistDir, process: child, stop: (signal = 'SIGTERM') => killGroup(child, signal) };
}
