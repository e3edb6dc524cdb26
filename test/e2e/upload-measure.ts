/**
 * Tools for the large-upload test and benchmark: a big file, the memory of the master's workerd
 * processes and of a CLI process (from /proc), a proxy that counts the part bytes that really
 * travel, and a `farm` CLI run that can be killed half-way.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import { join } from 'node:path';
import { ROOT } from './harness.ts';

const MiB = 1024 * 1024;

/** A file of `bytes` that starts like a .blend and is random after (no two runs alike). */
export async function makeLargeFile(path: string, bytes: number): Promise<void> {
  const file = await open(path, 'w');
  try {
    const head = Buffer.from('BLENDER-v304');
    await file.write(head);
    let left = bytes - head.length;
    while (left > 0) {
      const chunk = randomBytes(Math.min(left, 8 * MiB));
      await file.write(chunk);
      left -= chunk.length;
    }
  } finally {
    await file.close();
  }
}

/** A memory field of /proc/PID/status in bytes (VmHWM: the highest resident memory so far); 0 once the process is gone. */
export function statusField(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Pids of every process below `root` (children, grandchildren, …), from /proc. */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      // Exited while we looked.
    }
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift()!) ?? []) {
      out.push(child);
      queue.push(child);
    }
  }
  return out;
}

/** Resident memory of the workerd processes under `wranglerPid` (the master), in bytes. */
function masterRss(wranglerPid: number): number {
  return descendants(wranglerPid)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'workerd';
      } catch {
        return false;
      }
    })
    .reduce((sum, pid) => sum + statusField(pid, 'VmRSS'), 0);
}

/** Samples `read()` every `everyMs` into a timeline, for peaks over time windows. */
function timelineSampler(read: () => number, everyMs = 100): { peakBetween(from: number, to: number): number; stop(): void } {
  const samples: [number, number][] = [[Date.now(), read()]];
  const timer = setInterval(() => samples.push([Date.now(), read()]), everyMs);
  return {
    peakBetween(from, to) {
      return samples.filter(([t]) => t >= from && t <= to).reduce((peak, [, v]) => Math.max(peak, v), 0);
    },
    stop() {
      clearInterval(timer);
      samples.push([Date.now(), read()]);
    },
  };
}

export interface CountingProxy {
  url: string;
  /** Request body bytes of part uploads (`PUT /blobs/.../parts/n`) since the last reset. */
  partBytes: number;
  /** Part uploads the master answered with 200 since the last reset. */
  partsStored: number;
  /** When the first `POST .../complete` since the last reset arrived (ms since epoch), or 0. */
  completeAt: number;
  reset(): void;
  close(): Promise<void>;
}

/** An HTTP proxy in front of `target` that counts the part bytes the CLI really sends. */
export async function startCountingProxy(target: string): Promise<CountingProxy> {
  const upstream = new URL(target);
  const state = { partBytes: 0, partsStored: 0, completeAt: 0, generation: 0 };
  const server: Server = createServer((req, res) => {
    const isPart = req.method === 'PUT' && /\/parts\/\d+$/.test(req.url ?? '');
    // Bytes of a killed client's part can still arrive after a reset: they belong to the run before it.
    const generation = state.generation;
    const current = () => generation === state.generation;
    if (req.method === 'POST' && /\/complete$/.test(req.url ?? '') && state.completeAt === 0) state.completeAt = Date.now();
    const forward = request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      if (isPart && answer.statusCode === 200 && current()) state.partsStored++;
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    forward.on('error', () => res.destroy());
    req.on('data', (chunk: Buffer) => {
      if (isPart && current()) state.partBytes += chunk.length;
    });
    // A client killed mid-part: the master must see the part end early, as it would.
    req.on('close', () => {
      if (!req.complete) forward.destroy();
    });
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    get partBytes() {
      return state.partBytes;
    },
    get partsStored() {
      return state.partsStored;
    },
    get completeAt() {
      return state.completeAt;
    },
    reset() {
      state.generation++;
      state.partBytes = 0;
      state.partsStored = 0;
      state.completeAt = 0;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Highest resident memory of the CLI process seen (VmHWM), in bytes. */
  peakRss: number;
}

/**
 * Runs `farm ARGS` (the real CLI on this Node). `killWhen` is polled every 50 ms; once it is
 * true the CLI is killed with SIGKILL, like a crash or a pulled cable.
 */
export function runFarm(args: string[], options: { env?: Record<string, string>; killWhen?: () => boolean; timeoutMs?: number } = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'cli', 'farm.ts'), ...args], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: '1', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let peakRss = 0;
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setInterval(() => {
      if (child.pid) peakRss = Math.max(peakRss, statusField(child.pid, 'VmHWM'));
      if (options.killWhen?.()) child.kill('SIGKILL');
    }, 50);
    const deadline = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 300_000);
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearInterval(timer);
      clearTimeout(deadline);
      // Let the pipes drain before answering.
      setImmediate(() => resolve({ code, signal, stdout, stderr, peakRss }));
    });
  });
}

export interface UploadScenario {
  size: number;
  sha256: string;
  partSize: number;
  partCount: number;
  /** Run 1, killed half-way: parts the master confirmed before the kill. */
  killed: { partsStored: number; partBytes: number; signal: NodeJS.Signals | null };
  /** Run 2, the same command again: what it sent and what it reported. */
  resumed: { partBytes: number; seconds: number; result: Record<string, unknown>; stderr: string };
  /** Run 3, the same file once more. */
  again: { partBytes: number; result: Record<string, unknown>; stderr: string };
  /** Resident memory of the master's workerd processes, in bytes: before run 1, then peaks. */
  master: {
    baseline: number;
    /** Run 1: the first half of the parts. */
    firstHalf: number;
    /** Run 2 until it asks to complete: the second half of the parts. */
    secondHalf: number;
    /** Run 2 from its complete (the master hashes the whole blob) to its end. */
    complete: number;
    /** Everything, run 3 included. */
    peak: number;
  };
  cliPeak: number;
  /** Resident memory of a CLI that only loads and prints its help: what the upload adds is on top. */
  cliBaseline: number;
  downloadedSha256: string;
}

/**
 * Uploads a fresh file of `size` bytes with `farm submit` through a counting proxy: killed once
 * half the parts are stored, run again to finish, then run a third time. Measures the master's
 * and the CLI's memory on the way.
 */
export async function runUploadScenario(opts: {
  masterUrl: string;
  wranglerPid: number;
  dir: string;
  size: number;
  partSize: number;
}): Promise<UploadScenario> {
  const { createHash } = await import('node:crypto');
  const { createReadStream } = await import('node:fs');
  const file = join(opts.dir, 'big.blend');
  await makeLargeFile(file, opts.size);
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  const sha256 = hash.digest('hex');
  const partCount = Math.ceil(opts.size / opts.partSize);

  const proxy = await startCountingProxy(opts.masterUrl);
  const args = ['--master', proxy.url, 'submit', file, '--no-deps', '--frames', '1-1', '--json', '--no-progress', '--parallel', '2'];
  try {
    const help = await runFarm(['submit', '--help']);
    const masterBaseline = masterRss(opts.wranglerPid);
    const memory = timelineSampler(() => masterRss(opts.wranglerPid));
    const t0 = Date.now();

    const first = await runFarm(args, { killWhen: () => proxy.partsStored >= Math.ceil(partCount / 2) });
    const killed = { partsStored: proxy.partsStored, partBytes: proxy.partBytes, signal: first.signal };
    const t1 = Date.now();
    proxy.reset();

    const second = await runFarm(args);
    if (second.code !== 0) throw new Error(`the resumed upload failed (exit ${second.code}): ${second.stderr}`);
    const t2 = Date.now();
    const completeAt = proxy.completeAt || t2;
    const resumed = {
      partBytes: proxy.partBytes,
      seconds: (t2 - t1) / 1000,
      result: JSON.parse(second.stdout) as Record<string, unknown>,
      stderr: second.stderr,
    };
    proxy.reset();

    const third = await runFarm(args);
    if (third.code !== 0) throw new Error(`the third submission failed (exit ${third.code}): ${third.stderr}`);
    const again = { partBytes: proxy.partBytes, result: JSON.parse(third.stdout) as Record<string, unknown>, stderr: third.stderr };
    memory.stop();
    const master = {
      baseline: masterBaseline,
      firstHalf: memory.peakBetween(t0, t1),
      secondHalf: memory.peakBetween(t1, completeAt),
      complete: memory.peakBetween(completeAt, t2),
      peak: memory.peakBetween(t0, Date.now()),
    };

    // What the master stores, read back whole. Tried again if the connection drops: `wrangler dev`
    // restarts the Worker whenever a file under edge/ changes.
    let downloadedSha256 = '';
    for (let attempt = 1; ; attempt++) {
      try {
        const download = createHash('sha256');
        const response = await fetch(`${opts.masterUrl}/blobs/${sha256}`);
        if (!response.ok || !response.body) throw new Error(`GET /blobs/${sha256} answered ${response.status}`);
        for await (const chunk of response.body) download.update(chunk);
        downloadedSha256 = download.digest('hex');
        break;
      } catch (err) {
        if (attempt >= 3) throw err;
      }
    }

    return {
      size: opts.size,
      sha256,
      partSize: opts.partSize,
      partCount,
      killed,
      resumed,
      again,
      master,
      cliPeak: Math.max(first.peakRss, second.peakRss, third.peakRss),
      cliBaseline: help.peakRss,
      downloadedSha256,
    };
  } finally {
    await proxy.close();
  }
}
