/**
 * Where the master's memory goes during a chunked upload under `wrangler dev` (benchmark 4's
 * question): the same parts are sent to a bare Worker (bench/upload-sink-worker.ts) that
 *   0. reads them in JavaScript, a chunk at a time, and drops them,
 *   1. pipes them into a SHA-256 DigestStream (hashed natively, but the chunks still pass through
 *      the Worker's isolate as ArrayBuffers),
 *   2. streams them into a local R2 multipart upload and completes it (what our part route does),
 *   3. reads the object back in 4 MiB ranges (--read-mib) into a SHA-256 (what `complete` does),
 * each phase in a fresh `wrangler dev` on the same local state, with workerd's resident memory
 * sampled every 100 ms and the Worker's own isolate (JS heap + ArrayBuffers, through the
 * inspector) every 250 ms (growth = highest sample minus the idle mean before the phase).
 *
 * Under `wrangler dev`, local R2 is itself JavaScript (miniflare's R2 Durable Object, which
 * MD5-hashes every part and writes it to disk through another service) running in the same
 * workerd process as the Worker; a deployed Worker hands the bytes to R2 over the network.
 *
 *   node bench/upload-sink.ts [--mib 256] [--part-mib 16] [--read-mib 4]
 */
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { isMain, machineInfo, report, rssMb, runBench, startBareWorker, tempDir, workerdByRole, workerInspector } from './lib.ts';
import { writeBigFile } from './memory.ts';

interface Sample {
  /** The dev proxy's workerd (see workerdByRole). */
  proxy: number;
  /** The workerd that runs the Worker and local R2. */
  runtime: number;
}

interface Phase {
  name: string;
  /** Growth of each process: its highest sample minus its idle mean, MB. */
  proxyMb: number;
  runtimeMb: number;
  /** Growth of the two together (highest sum minus idle sum). */
  totalMb: number;
  /** Growth of the Worker's own isolate: JS heap + ArrayBuffers (see workerInspector). */
  isolateMb: number;
  seconds: number;
}

/** Starts `wrangler dev` on the sink Worker; the same `persistDir` keeps local R2 between starts. */
async function startSink(dir: string, persistDir: string) {
  const { url, port, child, stop } = await startBareWorker({
    dir,
    name: 'upload-sink',
    main: 'upload-sink-worker.ts',
    persistDir,
    toml: ['[[r2_buckets]]', 'binding = "FILES"', 'bucket_name = "upload-sink"'],
  });
  const memory = (): Sample => {
    const { proxy, runtime } = workerdByRole(child.pid!, port);
    const sum = (pids: number[]) => pids.reduce((total, pid) => total + rssMb(pid), 0);
    return { proxy: sum(proxy), runtime: sum(runtime) };
  };
  const inspector = await workerInspector(child.pid!);
  return {
    url,
    memory,
    isolateMb: async () => {
      const { jsMb, buffersMb } = await inspector.heap();
      return jsMb + buffersMb;
    },
    stop: () => (inspector.close(), stop()),
  };
}

/** Runs `fn` in a fresh sink and measures workerd's growth while it runs. */
async function phase(name: string, dir: string, persistDir: string, fn: (url: string) => Promise<void>): Promise<Phase> {
  const sink = await startSink(dir, persistDir);
  try {
    const idle: Sample[] = [];
    const isolate: number[] = [];
    const isolateTimer = setInterval(
      () =>
        void sink.isolateMb().then(
          (mb) => isolate.push(mb),
          () => {},
        ),
      250,
    );
    const idleTimer = setInterval(() => idle.push(sink.memory()), 100);
    await new Promise((r) => setTimeout(r, 2_000));
    clearInterval(idleTimer);
    const isolateIdle = isolate.splice(0);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const samples: Sample[] = [];
    const timer = setInterval(() => samples.push(sink.memory()), 100);
    const started = performance.now();
    await fn(sink.url);
    const seconds = (performance.now() - started) / 1000;
    clearInterval(timer);
    clearInterval(isolateTimer);
    samples.push(sink.memory());
    isolate.push(await sink.isolateMb());
    const growth = (of: (s: Sample) => number) => Math.max(...samples.map(of)) - mean(idle.map(of));
    return {
      name,
      proxyMb: growth((s) => s.proxy),
      runtimeMb: growth((s) => s.runtime),
      totalMb: growth((s) => s.proxy + s.runtime),
      isolateMb: Math.max(...isolate) - mean(isolateIdle),
      seconds,
    };
  } finally {
    await sink.stop();
  }
}

async function put(url: string, file: string, offset: number, length: number): Promise<string> {
  const response = await request(url, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(length) },
    body: createReadStream(file, { start: offset, end: offset + length - 1 }),
  });
  const text = await response.body.text();
  if (response.statusCode >= 300) throw new Error(`${url} answered ${response.statusCode}: ${text}`);
  return text;
}

export async function benchUploadSink(options: { mib: number; partMib: number; readMib: number }): Promise<Phase[]> {
  console.log(`upload sink: ${options.mib} MiB in parts of ${options.partMib} MiB through a bare Worker under wrangler dev`);
  const dir = tempDir('bench-upload-sink');
  const persistDir = join(dir, 'state');
  const file = join(dir, 'big.bin');
  const sha256 = await writeBigFile(file, options.mib);
  const size = options.mib * 2 ** 20;
  const partBytes = options.partMib * 2 ** 20;
  const parts = Math.ceil(size / partBytes);
  const each = async (fn: (n: number, offset: number, length: number) => Promise<void>) => {
    for (let n = 1; n <= parts; n++) await fn(n, (n - 1) * partBytes, Math.min(partBytes, size - (n - 1) * partBytes));
  };
  try {
    const results = [
      await phase('read in JS and drop', dir, persistDir, (url) =>
        each(async (_n, offset, length) => void (await put(`${url}/discard`, file, offset, length))),
      ),
      await phase('pipe into a DigestStream', dir, persistDir, (url) =>
        each(async (_n, offset, length) => void (await put(`${url}/digest`, file, offset, length))),
      ),
      await phase('stream into local R2 + complete', dir, persistDir, async (url) => {
        const { upload_id } = (await (await fetch(`${url}/r2/start`, { method: 'POST' })).json()) as { upload_id: string };
        const etags: R2UploadedPart[] = [];
        await each(async (n, offset, length) => void etags.push(JSON.parse(await put(`${url}/r2/${upload_id}/${n}`, file, offset, length)) as R2UploadedPart));
        const complete = await fetch(`${url}/r2/${upload_id}/complete`, { method: 'POST', body: JSON.stringify(etags) });
        if (!complete.ok) throw new Error(`complete answered ${complete.status}: ${await complete.text()}`);
      }),
      await phase(`read back into SHA-256 in ${options.readMib} MiB ranges`, dir, persistDir, async (url) => {
        const got = (await (await fetch(`${url}/r2/read?chunk_mib=${options.readMib}`, { method: 'POST' })).json()) as { sha256: string };
        if (got.sha256 !== sha256) throw new Error(`read back ${got.sha256}, wrote ${sha256}`);
      }),
    ];
    console.log('results:');
    for (const r of results) {
      report(
        `workerd growth: ${r.name}`,
        r.totalMb,
        'MB',
        `dev proxy ${r.proxyMb.toFixed(0)} MB, runtime ${r.runtimeMb.toFixed(0)} MB, of which the Worker's isolate ${r.isolateMb.toFixed(1)} MB; ${r.seconds.toFixed(1)} s`,
      );
    }
    return results;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (isMain(import.meta)) {
  const { values } = parseArgs({
    options: { mib: { type: 'string', default: '256' }, 'part-mib': { type: 'string', default: '16' }, 'read-mib': { type: 'string', default: '4' } },
  });
  runBench(async () => {
    console.log(`machine: ${machineInfo()}`);
    await benchUploadSink({ mib: Number(values.mib), partMib: Number(values['part-mib']), readMib: Number(values['read-mib']) });
  });
}
