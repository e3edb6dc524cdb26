/**
 * Real parts for end-to-end tests: the master under `wrangler dev` with its own persisted local
 * D1/R2 directory and port, render nodes as real `worker-node` processes, Blender scenes made by
 * the committed generators. Every process leads its own process group and is killed with it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JobStatusResponse } from '../../protocol/schemas.ts';
import { removeTempDirs, tempDir } from '../temp-dirs.ts';

export { tempDir };

export const ROOT = resolve(import.meta.dirname, '../..');
const WRANGLER = join(ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js');
export const BLENDER = process.env.BLENDER ?? 'blender';
/** Test output (logs, screenshots) kept after the run for people to look at. */
export const OUTPUT_DIR = join(ROOT, 'test-output');

const QUIET_ENV = { CI: 'true', CLOUDFLARE_CF_FETCH_ENABLED: 'false', WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1' };

/**
 * What this test file started. setup.ts stops it all after the file's own hooks, so a file stops
 * by hand only what must stop at a given moment or in a given order.
 */
const started = { nodes: new Set<RenderNode>(), masters: new Set<Master>() };

/** After a test file (setup.ts): its nodes first (a stopping node hands its task back to its master), then its masters, then its temp dirs. */
export async function stopAndRemoveAll(): Promise<void> {
  await Promise.all([...started.nodes].map((node) => node.stop()));
  await Promise.all([...started.masters].map((master) => master.stop()));
  removeTempDirs();
}

/** A TCP port nothing listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolvePort(port));
    });
  });
}

function logStream(name: string) {
  mkdirSync(join(OUTPUT_DIR, 'logs'), { recursive: true });
  return createWriteStream(join(OUTPUT_DIR, 'logs', `${name}.log`), { flags: 'a' });
}

/** Kills a process group: SIGTERM, then SIGKILL after `graceMs`; resolves when the leader exited. */
export async function killGroup(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    process.kill(-child.pid, signal);
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }, graceMs);
  await exited;
  clearTimeout(timer);
  // Children of the leader (workerd) may outlive it by a moment.
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

export async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs: number, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${(lastError as Error).message})` : ''}`);
}

export interface Master {
  url: string;
  port: number;
  persistDir: string;
  process: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Applies the migrations to `persistDir` and starts `wrangler dev` on `port`. */
export async function startMaster(opts: {
  name: string;
  port?: number;
  persistDir?: string;
  vars?: Record<string, string>;
  /** false: a restart on a persistDir that is migrated already (saves starting wrangler twice). */
  migrate?: boolean;
  /** More arguments of `wrangler dev`: another entry point of the same Worker, flags. */
  wranglerArgs?: string[];
}): Promise<Master> {
  const port = opts.port ?? (await freePort());
  const persistDir = opts.persistDir ?? tempDir(`${opts.name}-state`);
  const env = { ...process.env, ...QUIET_ENV };
  if (opts.migrate !== false) {
    const migrate = spawnSync(process.execPath, [WRANGLER, 'd1', 'migrations', 'apply', 'DB', '--local', '--persist-to', persistDir], {
      cwd: ROOT,
      env,
      encoding: 'utf8',
    });
    if (migrate.status !== 0) throw new Error(`applying migrations failed: ${migrate.stderr}${migrate.stdout}`);
  }
  // Local development runs open, as `npm run dev` does; tests of a deployed master pass FARM_ALLOW_ANONYMOUS=false.
  const vars = Object.entries({ FARM_ALLOW_ANONYMOUS: 'true', ...opts.vars }).flatMap(([k, v]) => ['--var', `${k}:${v}`]);
  const child = spawn(
    process.execPath,
    [
      WRANGLER,
      'dev',
      '--port',
      String(port),
      '--ip',
      '127.0.0.1',
      '--inspector-port',
      String(await freePort()),
      '--persist-to',
      persistDir,
      '--log-level',
      'warn',
      ...vars,
      ...(opts.wranglerArgs ?? []),
    ],
    { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const log = logStream(`master-${opts.name}`);
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  const url = `http://127.0.0.1:${port}`;
  await waitFor('the master to answer /time', async () => (await fetch(`${url}/time`)).ok, 60_000);
  const master: Master = { url, port, persistDir, process: child, stop: (signal = 'SIGTERM') => killGroup(child, signal) };
  started.masters.add(master);
  return master;
}

export interface RenderNode {
  name: string;
  workDir: string;
  process: ChildProcess;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

/** Starts a real render node process (`worker-node/main.ts` on this Node, with the Node flags of `npm run worker`). */
export function startNode(opts: { name: string; master: string; workDir?: string; args?: string[]; env?: Record<string, string> }): RenderNode {
  const workDir = opts.workDir ?? tempDir(`node-${opts.name}`);
  const child = spawn(
    process.execPath,
    [
      '--max-semi-space-size=2',
      join(ROOT, 'worker-node', 'main.ts'),
      '--master',
      opts.master,
      '--name',
      opts.name,
      '--work-dir',
      workDir,
      '--threads',
      '1',
      ...(opts.args ?? []),
    ],
    { cwd: ROOT, env: { ...process.env, BLENDER, ...opts.env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const log = logStream(`node-${opts.name}`);
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const node: RenderNode = {
    name: opts.name,
    workDir,
    process: child,
    exited,
    stop: (signal = 'SIGTERM', graceMs = 30_000) => killGroup(child, signal, graceMs),
  };
  started.nodes.add(node);
  return node;
}

/** Runs a committed scene generator: `test/scenes/<script>` with arguments after `--`. */
export function makeScene(script: string, args: string[]): void {
  const result = spawnSync(BLENDER, ['-b', '--factory-startup', '--python', join(ROOT, 'test', 'scenes', script), '--', ...args], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  if (result.status !== 0) throw new Error(`${script} failed (exit ${result.status}): ${result.stderr}\n${result.stdout.slice(-2000)}`);
}

/** `Authorization` for a master that requires a token; nothing for an open one. */
export const authHeaders = (token?: string): Record<string, string> => (token ? { authorization: `Bearer ${token}` } : {});

/** Submits with the seed's multipart form (with a submitter token when the master needs one). */
export async function submitJob(
  master: string,
  blend: Blob,
  fields: Record<string, string | number>,
  fileName = 'scene.blend',
  token?: string,
): Promise<{ job_id: string; total_frames: number }> {
  const form = new FormData();
  form.set('blend_file', blend, fileName);
  for (const [k, v] of Object.entries(fields)) form.set(k, String(v));
  const response = await fetch(`${master}/submit_job`, { method: 'POST', body: form, headers: authHeaders(token) });
  const body = await response.json();
  if (response.status !== 201) throw new Error(`submit_job answered ${response.status}: ${JSON.stringify(body)}`);
  return body as { job_id: string; total_frames: number };
}

export async function jobStatus(master: string, jobId: string, token?: string): Promise<JobStatusResponse> {
  const response = await fetch(`${master}/job_status/${jobId}`, { headers: authHeaders(token) });
  if (!response.ok) throw new Error(`job_status answered ${response.status}`);
  return (await response.json()) as JobStatusResponse;
}

/** Waits until the job reaches one of `states`, and returns its status. */
export function waitForJob(master: string, jobId: string, states: string[], timeoutMs: number, token?: string): Promise<JobStatusResponse> {
  return waitFor(
    `job ${jobId} to be ${states.join(' or ')}`,
    async () => {
      const status = await jobStatus(master, jobId, token);
      return states.includes(status.status) ? status : null;
    },
    timeoutMs,
    250,
  );
}

/** The ids of a node process's Blender children (each leads its own process group). */
export function blenderChildren(nodePid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited while we looked
    }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === nodePid && comm.includes('blender')) found.push(Number(entry));
  }
  return found;
}

/** Whether a process with this id is still there. */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGKILLs a process group at once (no grace): a machine that dies. */
export function killGroupNow(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}
