/**
 * Benchmark 1, farm vs plain: what the farm adds around Blender on one node.
 *
 * A generated animated scene with a particle simulation (test/scenes/make_anim_scene.py, live
 * simulation by default) is rendered, with the same thread count everywhere:
 *   - plain: one `blender -b FILE -o ... -t T -s 1 -e N -a`;
 *   - farm (hot Blender): submitted to the local master (`wrangler dev`) with one idle render
 *     node, timed from the submit request to the job's `finished_at`, including the blend's upload
 *     and download, every frame's upload, previews and the reports;
 *   - once each: the farm with a preview of every frame (FARM_PREVIEWS=on; by default a node
 *     makes none of PNG frames this small, see worker-node/frame-preview.ts), the farm with
 *     `--no-hot` (one Blender process per task), and one `blender -f N` process per frame
 *     (Flamenco's default chunk size 1).
 * Plain and farm alternate `--repeats` times; the verdict is the median of each farm run's ratio
 * to the plain run just before it, so a machine whose load drifts favours neither (the ratio of
 * the two medians is shown too). Besides wall time, CPU time is counted (Blender's for plain; the
 * node's process tree, Blender included, plus the master's for the farm): on a machine shared
 * with other work, CPU seconds show what the farm adds far more steadily than wall time does.
 * The farm's frames are downloaded and compared with plain's, pixel for pixel.
 *
 *   node bench/farm-vs-plain.ts [--frames 24] [--width 480 --height 360] [--threads 2] [--repeats 2] [--bake] [--quick]
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { decodePng } from '../test/e2e/png.ts';
import {
  BENCH_MASTER_VARS,
  BLENDER,
  isMain,
  machineInfo,
  makeScene,
  processCpuSeconds,
  reapedChildrenCpuSeconds,
  report,
  runBench,
  startMaster,
  startNode,
  tempDir,
  treeCpuSeconds,
  verdict,
  waitFor,
} from './lib.ts';

const execFileAsync = promisify(execFile);

export interface FarmVsPlainOptions {
  frames: number;
  width: number;
  height: number;
  threads: number;
  repeats: number;
  bake: boolean;
  /** Skip the once-only variants (every preview, --no-hot, a process per frame). */
  quick: boolean;
}

interface Run {
  wallS: number;
  cpuS: number;
}

export interface FarmVsPlainResult {
  plain: Run;
  farm: Run;
  /** Medians of each farm run's ratio to the plain run before it. */
  pairs: { wall: number; cpu: number };
  farmAllPreviews: Run | null;
  farmCold: Run | null;
  perFrame: Run | null;
  identical: number;
}

const BLENDER_BASE = ['-b', '--factory-startup', '--disable-autoexec', '-noaudio'];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
/** The median, halfway between the middle two of an even count. */
const middle = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const half = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[half]! : (sorted[half - 1]! + sorted[half]!) / 2;
};

/** Runs Blender processes through `fn`, returning wall and CPU seconds (the children this process reaped). */
async function timedBlender(fn: () => Promise<unknown>): Promise<Run> {
  const cpuBefore = reapedChildrenCpuSeconds();
  const started = performance.now();
  await fn();
  return { wallS: (performance.now() - started) / 1000, cpuS: reapedChildrenCpuSeconds() - cpuBefore };
}

/** Renders the job on a fresh master with one idle node: wall seconds from submit to finished_at, CPU seconds, frames. */
export async function farmRun(
  blend: string,
  opts: FarmVsPlainOptions,
  label: string,
  nodeArgs: string[],
  nodeEnv: Record<string, string> = {},
): Promise<Run & { frames: Map<number, Buffer> }> {
  const master = await startMaster({ name: `bench-farm-${label}`, vars: BENCH_MASTER_VARS });
  const node = startNode({ name: `bench-${label}`, master: master.url, args: ['--threads', String(opts.threads), ...nodeArgs], env: nodeEnv });
  try {
    // The node is up, registered and long-polling before the clock starts: an idle farm.
    await waitFor(
      `node ${node.name} to register`,
      async () => {
        const body = (await (await fetch(`${master.url}/workers`)).json()) as { workers: { name: string }[] };
        return body.workers.some((w) => w.name === node.name);
      },
      60_000,
    );
    await new Promise((r) => setTimeout(r, 1_000));
    const nodeCpu = () => treeCpuSeconds(node.process.pid!);
    const nodeOwnCpu = () => processCpuSeconds(node.process.pid!).own;
    const masterCpu = () => treeCpuSeconds(master.process.pid!);
    const bytes = readFileSync(blend);
    const [nodeBefore, nodeOwnBefore, masterBefore] = [nodeCpu(), nodeOwnCpu(), masterCpu()];
    const startedAt = Date.now();
    const form = new FormData();
    form.set('blend_file', new Blob([bytes]), 'bench.blend');
    form.set('start_frame', '1');
    form.set('end_frame', String(opts.frames));
    const submitted = await fetch(`${master.url}/submit_job`, { method: 'POST', body: form });
    const job = (await submitted.json()) as { job_id: string };
    if (submitted.status !== 201) throw new Error(`submit_job answered ${submitted.status}: ${JSON.stringify(job)}`);
    // Polled slowly, so the poll costs the master little; the master's finished_at gives the end.
    const status = await pollJob(master.url, job.job_id, 900_000);
    const [nodeS, nodeOwnS, masterS] = [nodeCpu() - nodeBefore, nodeOwnCpu() - nodeOwnBefore, masterCpu() - masterBefore];
    const cpuS = nodeS + masterS;
    if (status.status !== 'completed' || !status.finished_at) throw new Error(`the farm's job ended ${status.status}`);
    const wallS = (Date.parse(status.finished_at) - startedAt) / 1000;
    const list = (await (await fetch(`${master.url}/jobs/${job.job_id}/frames?limit=1000`)).json()) as { frames: { frame: number; url: string }[] };
    const frames = new Map<number, Buffer>();
    for (const f of list.frames) frames.set(f.frame, Buffer.from(await (await fetch(`${master.url}${f.url}`)).arrayBuffer()));
    const tasks = (await (await fetch(`${master.url}/jobs/${job.job_id}/tasks`)).json()) as { tasks: { start_frame: number; end_frame: number }[] };
    console.log(
      `    farm (${label}): ${tasks.tasks.length} tasks (${tasks.tasks.map((t) => `${t.start_frame}-${t.end_frame}`).join(', ')}); ` +
        `CPU: node with Blender ${nodeS.toFixed(1)} s (the node's own process ${nodeOwnS.toFixed(1)} s), master ${masterS.toFixed(1)} s`,
    );
    return { wallS, cpuS, frames };
  } finally {
    await node.stop();
    await master.stop();
  }
}

async function pollJob(url: string, jobId: string, timeoutMs: number): Promise<{ status: string; finished_at: string | null }> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const status = (await (await fetch(`${url}/job_status/${jobId}`)).json()) as { status: string; finished_at: string | null };
    if (['completed', 'failed', 'canceled'].includes(status.status)) return status;
    await new Promise((r) => setTimeout(r, 1_000));
  }
  throw new Error(`job ${jobId} did not finish in ${timeoutMs} ms`);
}

const show = (run: Run) => `${run.wallS.toFixed(1)} s wall, ${run.cpuS.toFixed(1)} s CPU`;

export async function benchFarmVsPlain(opts: FarmVsPlainOptions): Promise<FarmVsPlainResult> {
  const dir = tempDir('bench-farm-vs-plain');
  const blend = join(dir, 'anim.blend');
  makeScene('make_anim_scene.py', [
    blend,
    '--frames',
    String(opts.frames),
    '--width',
    String(opts.width),
    '--height',
    String(opts.height),
    ...(opts.bake ? [] : ['--no-bake']),
  ]);
  console.log(
    `farm vs plain: ${opts.frames} frames of ${opts.width}x${opts.height}, particle simulation ${opts.bake ? 'baked' : 'live (unbaked)'}, ` +
      `${opts.threads} threads, one node, ${opts.repeats} alternating repeats`,
  );

  const plainArgs = (out: string) => [
    ...BLENDER_BASE,
    blend,
    '-o',
    join(dir, out, 'f_######'),
    '-x',
    '1',
    '-t',
    String(opts.threads),
    '-s',
    '1',
    '-e',
    String(opts.frames),
    '-a',
  ];
  const plains: Run[] = [];
  const farms: (Run & { frames: Map<number, Buffer> })[] = [];
  for (let i = 0; i < opts.repeats; i++) {
    const plain = await timedBlender(() => execFileAsync(BLENDER, plainArgs(`plain-${i}`)));
    report(`plain blender -a (${i + 1})`, show(plain));
    plains.push(plain);
    const farm = await farmRun(blend, opts, `hot-${i}`, []);
    report(`farm, hot Blender (${i + 1})`, show(farm));
    farms.push(farm);
  }

  let farmAllPreviews: Run | null = null;
  let farmCold: Run | null = null;
  let perFrame: Run | null = null;
  if (!opts.quick) {
    // What dashboard previews would cost, made of every frame (work plain Blender does not do).
    farmAllPreviews = await farmRun(blend, opts, 'hot-all-previews', [], { FARM_PREVIEWS: 'on' });
    report('farm, hot, FARM_PREVIEWS=on', show(farmAllPreviews));
    farmCold = await farmRun(blend, opts, 'cold', ['--no-hot']);
    report('farm, --no-hot (a process per task)', show(farmCold));
    perFrame = await timedBlender(async () => {
      for (let f = 1; f <= opts.frames; f++) {
        await execFileAsync(BLENDER, [
          ...BLENDER_BASE,
          blend,
          '-o',
          join(dir, 'per-frame', 'f_######'),
          '-x',
          '1',
          '-t',
          String(opts.threads),
          '-f',
          String(f),
        ]);
      }
    });
    report('one blender -f N process per frame', show(perFrame));
  }

  let identical = 0;
  for (let f = 1; f <= opts.frames; f++) {
    const reference = decodePng(readFileSync(join(dir, 'plain-0', `f_${String(f).padStart(6, '0')}.png`))).pixelHash;
    if (farms.every((farm) => farm.frames.has(f) && decodePng(farm.frames.get(f)!).pixelHash === reference)) identical++;
  }
  report('farm frames pixel-identical to plain -a', `${identical} / ${opts.frames}`);

  const plain = { wallS: median(plains.map((r) => r.wallS)), cpuS: median(plains.map((r) => r.cpuS)) };
  const farm = { wallS: median(farms.map((r) => r.wallS)), cpuS: median(farms.map((r) => r.cpuS)) };
  // Each farm run against the plain run just before it: on a machine whose speed drifts (here
  // Blender's own CPU time for the same frames moved by a fifth within one run), pairs see the
  // same machine where medians taken apart may not.
  const pairs = {
    wall: middle(farms.map((f, i) => f.wallS / plains[i]!.wallS)),
    cpu: middle(farms.map((f, i) => f.cpuS / plains[i]!.cpuS)),
  };
  console.log(`ratios (plain = 1; median of the ${opts.repeats} pairs, then the ratio of the medians):`);
  verdict('farm (hot) / plain, wall time, pairs', pairs.wall, '<= 1.05', pairs.wall <= 1.05);
  report('farm (hot) / plain, CPU time, pairs', pairs.cpu);
  report('farm (hot) / plain, medians', `${(farm.wallS / plain.wallS).toFixed(3)} wall, ${(farm.cpuS / plain.cpuS).toFixed(3)} CPU`);
  const ratio = (run: Run | null) => (run ? `${(run.wallS / plain.wallS).toFixed(3)} wall, ${(run.cpuS / plain.cpuS).toFixed(3)} CPU` : '-');
  if (!opts.quick) {
    report('farm (hot, every preview) / plain', ratio(farmAllPreviews));
    report('farm (--no-hot) / plain', ratio(farmCold));
    report('one process per frame / plain', ratio(perFrame));
  }
  return { plain, farm, pairs, farmAllPreviews, farmCold, perFrame, identical };
}

if (isMain(import.meta)) {
  const { values } = parseArgs({
    options: {
      frames: { type: 'string', default: '24' },
      width: { type: 'string', default: '480' },
      height: { type: 'string', default: '360' },
      threads: { type: 'string', default: '2' },
      repeats: { type: 'string', default: '2' },
      bake: { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
    },
  });
  runBench(async () => {
    console.log(`machine: ${machineInfo()}`);
    const result = await benchFarmVsPlain({
      frames: Number(values.frames),
      width: Number(values.width),
      height: Number(values.height),
      threads: Number(values.threads),
      repeats: Number(values.repeats),
      bake: values.bake!,
      quick: values.quick!,
    });
    return result.identical === Number(values.frames) ? 0 : 1;
  });
}
