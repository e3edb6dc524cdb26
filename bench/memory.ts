/**
 * Benchmark 4, memory: the master's memory while a 1 GiB .blend is uploaded, and a render node's
 * while it downloads that file and while it renders.
 *
 *  - master: the resident memory of every workerd process under `wrangler dev`, sampled every
 *    100 ms; growth = the highest sample during the upload minus the mean before it. The file goes
 *    up through the chunked blob API (`POST /blobs/{sha256}/uploads`, then each part as a raw
 *    `PUT` with a Content-Length, streamed into an R2 multipart upload, then `complete`, which
 *    hashes the assembled object as a stream), which is how `farm submit` sends large files.
 *  - node: the resident memory of the node's own process (the Node daemon; Blender's memory is the
 *    scene's), sampled every 100 ms while it downloads the 1 GiB file (streamed to disk and hashed
 *    on the way) and while it renders a small real scene.
 *
 * The 1 GiB file is a valid .blend header ("BLENDER-v304") and pseudo-random bytes: the master
 * accepts it, the node downloads it, and Blender refuses it (the job fails, as expected).
 *
 * With --project the 1 GiB file is instead a texture in a project (a small real scene that names
 * it as an image with a fake user, so the render never loads it) sent with `farm submit` as a
 * manifest: the CLI uploads it as a blob, the node fetches it into its file cache, lays the project
 * out from the cache and renders the scene, and the job completes.
 *
 *   node bench/memory.ts [--mib 1024] [--part-mib N] [--master-only] [--project]
 *
 * --part-mib asks the master for parts of N MiB (it clamps; the default is its BLOB_PART_BYTES);
 * --master-only stops after the upload (no node, no render): quicker, for trying the master.
 */
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createReadStream, createWriteStream, mkdirSync, readFileSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { runFarm } from '../test/e2e/upload-measure.ts';
import {
  BENCH_MASTER_VARS,
  BLENDER,
  isMain,
  machineInfo,
  makeScene,
  report,
  rssMb,
  runBench,
  startMaster,
  startNode,
  tempDir,
  verdict,
  waitForJob,
  workerdByRole,
  workerInspector,
} from './lib.ts';

export interface MemoryResult {
  masterGrowthMb: number;
  nodeDownloadPeakMb: number;
  nodeRenderPeakMb: number;
}

/** Samples `measure()` every 100 ms until stopped; returns the samples. */
function sampler(measure: () => number) {
  const samples: number[] = [];
  const timer = setInterval(() => samples.push(measure()), 100);
  samples.push(measure());
  return {
    samples,
    stop: () => {
      clearInterval(timer);
      samples.push(measure());
      return samples;
    },
  };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * The Worker's isolate as V8 counts it (JS heap + ArrayBuffers), sampled every 250 ms, garbage
 * included; with `live`, every 2 s after a collection instead, until `liveUnavailable()` (the
 * inspector of `wrangler dev` stopped answering HeapProfiler.collectGarbage once the master served
 * static assets).
 */
function isolateSampler(inspector: Awaited<ReturnType<typeof workerInspector>>, live = false) {
  const samples: number[] = [];
  const liveSamples: number[] = [];
  let collect = live;
  let ticks = 0;
  const timer = setInterval(() => {
    const collected = collect && ++ticks % 8 === 0;
    inspector.heap({ live: collected }).then(
      ({ jsMb, buffersMb }) => (collected ? liveSamples : samples).push(jsMb + buffersMb),
      () => {},
    );
  }, 250);
  return {
    samples,
    liveSamples,
    liveUnavailable: () => {
      collect = false;
    },
    stop: () => clearInterval(timer),
  };
}

/** Writes `mib` MiB of pseudo-random bytes, starting with `header`. Returns the SHA-256. */
export async function writeBigFile(path: string, mib: number, header = 'BLENDER-v304'): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(path);
  const block = randomBytes(1024 * 1024);
  const write = (chunk: Buffer) =>
    new Promise<void>((resolve, reject) => {
      hash.update(chunk);
      out.write(chunk, (err) => (err ? reject(err) : resolve()));
    });
  for (let i = 0; i < mib; i++) {
    const chunk = Buffer.from(block);
    // Each MiB differs, so the file is not a repeated pattern anything could shortcut.
    chunk.writeUInt32LE(i, 64);
    if (i === 0) chunk.write(header, 0, 'latin1');
    await write(chunk);
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  return hash.digest('hex');
}

export async function benchMemory(options: { mib: number; partMib?: number; masterOnly?: boolean }): Promise<MemoryResult> {
  console.log(`memory: a ${options.mib} MiB .blend through the master and a node`);
  const dir = tempDir('bench-memory');
  const big = join(dir, 'big.blend');
  const sha256 = await writeBigFile(big, options.mib);
  const size = options.mib * 1024 * 1024;
  const small = join(dir, 'small.blend');
  makeScene('make_anim_scene.py', [small, '--frames', '12', '--width', '128', '--height', '96']);

  const master = await startMaster({ name: 'bench-memory', vars: BENCH_MASTER_VARS });
  // Every sample also records the RSS of the workerd that runs the Worker (with local R2 and D1)
  // apart from wrangler's dev proxy, to tell them apart in the report.
  const runtimeSamples: number[] = [];
  const masterRss = () => {
    const { proxy, runtime } = workerdByRole(master.process.pid!, master.port);
    const runtimeMb = runtime.reduce((sum, pid) => sum + rssMb(pid), 0);
    runtimeSamples.push(runtimeMb);
    return runtimeMb + proxy.reduce((sum, pid) => sum + rssMb(pid), 0);
  };
  const inspector = await workerInspector(master.process.pid!);
  const isolate = isolateSampler(inspector);
  const isolateSamples = isolate.samples;
  let node: ReturnType<typeof startNode> | undefined;
  try {
    // Baseline: the master idle after start-up.
    const idle = sampler(masterRss);
    await new Promise((r) => setTimeout(r, 2_000));
    const baseline = idle.stop();
    const baselineMb = baseline.reduce((a, b) => a + b, 0) / baseline.length;
    const runtimeBaselineMb = mean(runtimeSamples);
    const runtimeUploadFrom = runtimeSamples.length;
    const isolateBaselineMb = mean(isolateSamples);
    const isolateUploadFrom = isolateSamples.length;

    const during = sampler(masterRss);
    const started = performance.now();
    const start = await fetch(`${master.url}/blobs/${sha256}/uploads`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ size, ...(options.partMib ? { part_size: options.partMib * 1024 * 1024 } : {}) }),
    });
    const upload = (await start.json()) as { upload_id: string; part_size: number; part_count: number };
    if (start.status >= 300) throw new Error(`starting the upload answered ${start.status}: ${JSON.stringify(upload)}`);
    for (let n = 1; n <= upload.part_count; n++) {
      const offset = (n - 1) * upload.part_size;
      const length = Math.min(upload.part_size, size - offset);
      // `wrangler dev` restarts the Worker when edge/ changes: a 503 part is sent again.
      for (let attempt = 1; ; attempt++) {
        const response = await request(`${master.url}/blobs/${sha256}/uploads/${upload.upload_id}/parts/${n}`, {
          method: 'PUT',
          headers: { 'content-type': 'application/octet-stream', 'content-length': String(length) },
          body: createReadStream(big, { start: offset, end: offset + length - 1 }),
        });
        const text = await response.body.text();
        if (response.statusCode < 300) break;
        if (response.statusCode !== 503 || attempt === 3) throw new Error(`part ${n} answered ${response.statusCode}: ${text}`);
      }
    }
    const partsSeconds = (performance.now() - started) / 1000;
    const partsPeakMb = Math.max(...during.samples);
    const partsSampleCount = during.samples.length;
    const isolatePartsPeakMb = Math.max(...isolateSamples.slice(isolateUploadFrom));
    const complete = await fetch(`${master.url}/blobs/${sha256}/uploads/${upload.upload_id}/complete`, { method: 'POST' });
    if (complete.status >= 300) throw new Error(`completing the upload answered ${complete.status}: ${await complete.text()}`);
    const uploadSeconds = (performance.now() - started) / 1000;
    const uploadSamples = during.stop();
    const masterGrowthMb = Math.max(...uploadSamples) - baselineMb;
    const completePeakMb = Math.max(...uploadSamples.slice(partsSampleCount));
    // What stays once the upload is over: retained memory rather than buffers in flight.
    await new Promise((r) => setTimeout(r, 2_000));
    const runtimeGrowthMb = Math.max(...runtimeSamples.slice(runtimeUploadFrom)) - runtimeBaselineMb;
    const isolateGrowthMb = Math.max(...isolateSamples.slice(isolateUploadFrom)) - isolateBaselineMb;
    const settledMb = masterRss();

    if (options.masterOnly) {
      console.log('results:');
      report('master (workerd) RSS before upload', baselineMb, 'MB');
      report(
        `master growth during ${options.mib} MiB upload`,
        masterGrowthMb,
        'MB',
        `${upload.part_count} parts of ${(upload.part_size / 2 ** 20).toFixed(0)} MiB in ${uploadSeconds.toFixed(1)} s`,
      );
      report('  peak while the parts arrived', partsPeakMb - baselineMb, 'MB', `${partsSeconds.toFixed(1)} s`);
      report('  peak during complete', completePeakMb - baselineMb, 'MB', `${(uploadSeconds - partsSeconds).toFixed(1)} s`);
      report('  2 s after complete', settledMb - baselineMb, 'MB');
      report('  of which the workerd running the Worker', runtimeGrowthMb, 'MB', 'the rest is the dev proxy');
      report(
        "  the Worker's isolate (JS heap + buffers)",
        isolateGrowthMb,
        'MB',
        `${isolateBaselineMb.toFixed(1)} MB before; ${(isolatePartsPeakMb - isolateBaselineMb).toFixed(1)} MB while the parts arrived`,
      );
      verdict('master growth during upload (MB)', masterGrowthMb, '<= 64', masterGrowthMb <= 64);
      return { masterGrowthMb, nodeDownloadPeakMb: 0, nodeRenderPeakMb: 0 };
    }

    const bigJob = await fetch(`${master.url}/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ blob_sha256: sha256, kind: 'blend', start_frame: 1, end_frame: 1, max_attempts: 1, name: 'one-gib' }),
    });
    const bigJobBody = (await bigJob.json()) as { job_id: string };
    if (bigJob.status !== 201) throw new Error(`POST /jobs answered ${bigJob.status}: ${JSON.stringify(bigJobBody)}`);

    node = startNode({ name: 'bench-memory', master: master.url, args: ['--threads', '2'] });
    const nodePid = node.process.pid!;
    const nodeDuring = sampler(() => rssMb(nodePid));
    const masterDuringDownload = sampler(masterRss);
    const downloadStarted = performance.now();
    // Blender refuses the fake file: the job fails once the node has downloaded and tried it.
    await waitForJob(master.url, bigJobBody.job_id, ['failed', 'completed'], 600_000);
    const downloadSeconds = (performance.now() - downloadStarted) / 1000;
    const nodeDownloadPeakMb = Math.max(...nodeDuring.stop());
    const masterDownloadGrowthMb = Math.max(...masterDuringDownload.stop()) - baselineMb;
    // The node's copy is no longer needed; the disk is shared.
    await rm(join(node.workDir, 'blend_files', `${sha256}.blend`), { force: true });

    const nodeRender = sampler(() => rssMb(nodePid));
    const form = new FormData();
    form.set('blend_file', new Blob([readFileSync(small)]), 'small.blend');
    form.set('start_frame', '1');
    form.set('end_frame', '12');
    const smallJob = (await (await fetch(`${master.url}/submit_job`, { method: 'POST', body: form })).json()) as { job_id: string };
    const done = await waitForJob(master.url, smallJob.job_id, ['completed', 'failed'], 300_000);
    const nodeRenderPeakMb = Math.max(...nodeRender.stop());
    if (done.status !== 'completed') throw new Error(`the small job ended ${done.status}`);

    console.log('results:');
    report('master (workerd) RSS before upload', baselineMb, 'MB');
    report(
      `master growth during ${options.mib} MiB upload`,
      masterGrowthMb,
      'MB',
      `${upload.part_count} parts of ${(upload.part_size / 2 ** 20).toFixed(0)} MiB in ${uploadSeconds.toFixed(1)} s, ${(options.mib / uploadSeconds).toFixed(0)} MiB/s`,
    );
    report('  peak while the parts arrived', partsPeakMb - baselineMb, 'MB', `${partsSeconds.toFixed(1)} s`);
    report('  peak during complete', completePeakMb - baselineMb, 'MB', `${(uploadSeconds - partsSeconds).toFixed(1)} s`);
    report('  2 s after complete', settledMb - baselineMb, 'MB');
    report('  of which the workerd running the Worker', runtimeGrowthMb, 'MB', 'the rest is the dev proxy');
    report(
      "  the Worker's isolate (JS heap + buffers)",
      isolateGrowthMb,
      'MB',
      `${isolateBaselineMb.toFixed(1)} MB before; ${(isolatePartsPeakMb - isolateBaselineMb).toFixed(1)} MB while the parts arrived`,
    );
    report('master growth while the node downloads it', masterDownloadGrowthMb, 'MB');
    report(`node RSS peak, downloading ${options.mib} MiB`, nodeDownloadPeakMb, 'MB', `download and failed render in ${downloadSeconds.toFixed(1)} s`);
    report('node RSS peak, rendering 12 frames', nodeRenderPeakMb, 'MB');
    verdict('master growth during upload (MB)', masterGrowthMb, '<= 64', masterGrowthMb <= 64);
    verdict('node RSS peak (MB)', Math.max(nodeDownloadPeakMb, nodeRenderPeakMb), '<= 150', Math.max(nodeDownloadPeakMb, nodeRenderPeakMb) <= 150);
    return { masterGrowthMb, nodeDownloadPeakMb, nodeRenderPeakMb };
  } finally {
    isolate.stop();
    inspector.close();
    await node?.stop();
    await master.stop();
    await rm(dir, { recursive: true, force: true });
    await rm(master.persistDir, { recursive: true, force: true });
  }
}

/**
 * The 1 GiB file as a texture in a project sent by `farm submit` (a manifest): the master's
 * memory while the CLI uploads it, the CLI's, and the node's while it fetches the file into its
 * cache, lays the project out and renders.
 */
export async function benchProjectMemory(options: {
  mib: number;
}): Promise<MemoryResult & { isolateGrowthMb: number; liveGrowthMb: number; cliPeakMb: number }> {
  console.log(`memory: a project with a ${options.mib} MiB texture, sent with farm submit and rendered by a node`);
  const dir = tempDir('bench-memory-project');
  mkdirSync(join(dir, 'tex'));
  const sha256 = await writeBigFile(join(dir, 'tex', 'big.png'), options.mib, '\x89PNG\r\n\x1a\n');
  const blend = join(dir, 'scene.blend');
  makeScene('make_anim_scene.py', [blend, '--frames', '4', '--width', '128', '--height', '96']);
  // A fake user keeps the image in the file without any material using it: it travels, and the
  // render never reads it (its bytes are noise, not a PNG Blender could decode).
  execFileSync(
    BLENDER,
    [
      '-b',
      '--factory-startup',
      blend,
      '--python-expr',
      'import bpy; i = bpy.data.images.new("big", 4, 4); i.source = "FILE"; i.filepath = "//tex/big.png"; i.use_fake_user = True; bpy.ops.wm.save_mainfile()',
    ],
    { stdio: 'ignore' },
  );

  const master = await startMaster({ name: 'bench-memory-project', vars: BENCH_MASTER_VARS });
  const masterRss = () => {
    const { proxy, runtime } = workerdByRole(master.process.pid!, master.port);
    return [...proxy, ...runtime].reduce((sum, pid) => sum + rssMb(pid), 0);
  };
  const inspector = await workerInspector(master.process.pid!);
  const isolate = isolateSampler(inspector, true);
  const { samples: isolateSamples, liveSamples } = isolate;
  let node: ReturnType<typeof startNode> | undefined;
  try {
    const idle = sampler(masterRss);
    await new Promise((r) => setTimeout(r, 2_000));
    const baselineMb = mean(idle.stop());
    const isolateBaselineMb = mean(isolateSamples);
    const isolateFrom = isolateSamples.length;
    const liveBaseline = await inspector.heap({ live: true }).catch(() => null);
    const canCollect = liveBaseline !== null;
    if (!canCollect) isolate.liveUnavailable();
    const liveBaselineMb = liveBaseline ? liveBaseline.jsMb + liveBaseline.buffersMb : Number.NaN;
    const liveFrom = liveSamples.length;

    const during = sampler(masterRss);
    const started = performance.now();
    const run = await runFarm(['--master', master.url, 'submit', blend, '--frames', '1-4', '--json', '--no-progress', '--no-preview-video'], {
      env: { BLENDER },
      timeoutMs: 1_800_000,
    });
    if (run.code !== 0) throw new Error(`farm submit failed (exit ${run.code}): ${run.stderr}`);
    const uploadSeconds = (performance.now() - started) / 1000;
    const job = JSON.parse(run.stdout) as { job_id: string; uploaded_bytes: number };
    await new Promise((r) => setTimeout(r, 2_000));
    const masterGrowthMb = Math.max(...during.stop()) - baselineMb;
    const isolateGrowthMb = Math.max(...isolateSamples.slice(isolateFrom)) - isolateBaselineMb;
    const liveGrowthMb = Math.max(...liveSamples.slice(liveFrom)) - liveBaselineMb;

    node = startNode({ name: 'bench-memory-project', master: master.url, args: ['--threads', '2'] });
    const nodePid = node.process.pid!;
    const nodeDuring = sampler(() => rssMb(nodePid));
    const nodeStarted = performance.now();
    const done = await waitForJob(master.url, job.job_id, ['completed', 'failed'], 1_800_000);
    const nodeSeconds = (performance.now() - nodeStarted) / 1000;
    const nodePeakMb = Math.max(...nodeDuring.stop());
    if (done.status !== 'completed') throw new Error(`the project's job ended ${done.status}`);
    // The node really fetched the big file: its cache holds it under its hash.
    const cached = statSync(join(node.workDir, 'files', sha256), { throwIfNoEntry: false })?.size;
    if (cached !== options.mib * 1024 * 1024) throw new Error(`the node's cache has ${cached ?? 'no'} bytes for the texture`);

    console.log('results:');
    report(`farm submit of the project (${options.mib} MiB texture)`, uploadSeconds, 's', `${(job.uploaded_bytes / 2 ** 20).toFixed(0)} MiB uploaded`);
    report('master (workerd) RSS before upload', baselineMb, 'MB');
    report('master growth during the submission', masterGrowthMb, 'MB', 'workerd + local R2/D1 + dev proxy');
    report("  the Worker's isolate (JS heap + buffers), as sampled", isolateGrowthMb, 'MB', `${isolateBaselineMb.toFixed(1)} MB before; garbage included`);
    if (canCollect) {
      report(
        "  the Worker's isolate, live (after a collection)",
        liveGrowthMb,
        'MB',
        `${liveBaselineMb.toFixed(1)} MB before; ${liveSamples.length - liveFrom} samples`,
      );
    } else {
      report("  the Worker's isolate, live (after a collection)", 'n/a', '', 'the inspector did not answer HeapProfiler.collectGarbage');
    }
    report('CLI RSS peak', run.peakRss / 2 ** 20, 'MB');
    report('node RSS peak: fetch into the cache, lay out, render 4 frames', nodePeakMb, 'MB', `${nodeSeconds.toFixed(1)} s`);
    verdict('Worker isolate growth during the submission, as sampled (MB)', isolateGrowthMb, '<= 64', isolateGrowthMb <= 64);
    if (canCollect) verdict('Worker isolate growth during the submission, live (MB)', liveGrowthMb, '<= 64', liveGrowthMb <= 64);
    verdict('node RSS peak (MB)', nodePeakMb, '<= 150', nodePeakMb <= 150);
    return { masterGrowthMb, isolateGrowthMb, liveGrowthMb, cliPeakMb: run.peakRss / 2 ** 20, nodeDownloadPeakMb: nodePeakMb, nodeRenderPeakMb: nodePeakMb };
  } finally {
    isolate.stop();
    inspector.close();
    await node?.stop();
    await master.stop();
    await rm(dir, { recursive: true, force: true });
    await rm(master.persistDir, { recursive: true, force: true });
  }
}

if (isMain(import.meta)) {
  const { values } = parseArgs({
    options: {
      mib: { type: 'string', default: '1024' },
      'part-mib': { type: 'string' },
      'master-only': { type: 'boolean', default: false },
      project: { type: 'boolean', default: false },
    },
  });
  runBench(async () => {
    console.log(`machine: ${machineInfo()}`);
    if (values.project) return void (await benchProjectMemory({ mib: Number(values.mib) }));
    await benchMemory({ mib: Number(values.mib), partMib: values['part-mib'] ? Number(values['part-mib']) : undefined, masterOnly: values['master-only'] });
  });
}
