/**
 * Benchmark 1, farm vs plain: what the farm adds around Blender on one node.
 *
 * A generated animated scene with a particle simulation (test/scenes/make_anim_scene.py, live
 * simulation by default) is rendered:
 *   - plain: one `blender -b FILE -o ... -t T -s 1 -e N -a`, timed twice (before and after the
 *     farm runs) and averaged, so a machine whose load drifts does not favour either side;
 *   - farm (hot Blender): submit to the local master with one idle render node (`--threads T`),
 *     timed from the submit request to the job's `completed`, including the blend's upload and
 *     download, every frame's upload and the reports;
 *   - the same with the node's frame previews off (FARM_PREVIEWS=off), to show what they cost;
 *   - farm with `--no-hot` (one Blender process per task), for comparison;
 *   - one Blender process per frame (`-f 1`, `-f 2`, ...: Flamenco's default chunk size 1).
 * The farm's frames are downloaded and compared with plain's, pixel for pixel.
 *
 *   node bench/farm-vs-plain.ts [--frames 24] [--width 256 --height 192] [--threads 2] [--bake] [--no-cold]
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { decodePng } from '../test/e2e/png.ts';
import { BENCH_MASTER_VARS, BLENDER, isMain, machineInfo, makeScene, report, runBench, startMaster, startNode, tempDir, verdict, waitFor } from './lib.ts';

const execFileAsync = promisify(execFile);

export interface FarmVsPlainOptions {
  frames: number;
  width: number;
  height: number;
  threads: number;
  bake: boolean;
  cold: boolean;
}

export interface FarmVsPlainResult {
  plainS: number;
  farmS: number;
  farmColdS: number | null;
  farmNoPreviewsS: number;
  perFrameS: number;
  identical: number;
}

const BLENDER_BASE = ['-b', '--factory-startup', '--disable-autoexec', '-noaudio'];

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const started = performance.now();
  const value = await fn();
  return [(performance.now() - started) / 1000, value];
}

/** Renders the job on a fresh master with one node and returns seconds from submit to completed, and the frames. */
async function farmRun(
  blend: string,
  opts: FarmVsPlainOptions,
  label: string,
  nodeArgs: string[],
  nodeEnv: Record<string, string> = {},
): Promise<{ seconds: number; frames: Map<number, Buffer> }> {
  const master = await startMaster({ name: `bench-farm-${label}`, vars: BENCH_MASTER_VARS });
  const node = startNode({ name: `bench-${label}`, master: master.url, args: ['--threads', String(opts.threads), ...nodeArgs], env: nodeEnv });
  try {
    // The node is up, registered and long-polling before the clock starts: an idle farm.
    await waitFor(`node ${node.name} to register`, async () => {
      const body = (await (await fetch(`${master.url}/workers`)).json()) as { workers: { name: string }[] };
      return body.workers.some((w) => w.name === node.name);
    }, 60_000);
    await new Promise((r) => setTimeout(r, 500));
    const bytes = readFileSync(blend);
    const started = performance.now();
    const form = new FormData();
    form.set('blend_file', new Blob([bytes]), 'bench.blend');
    form.set('start_frame', '1');
    form.set('end_frame', String(opts.frames));
    const submitted = await fetch(`${master.url}/submit_job`, { method: 'POST', body: form });
    const job = (await submitted.json()) as { job_id: string };
    if (submitted.status !== 201) throw new Error(`submit_job answered ${submitted.status}: ${JSON.stringify(job)}`);
    const status = await pollJob(master.url, job.job_id, 600_000);
    const seconds = (performance.now() - started) / 1000;
    if (status !== 'completed') throw new Error(`the farm's job ended ${status}`);
    const list = (await (await fetch(`${master.url}/jobs/${job.job_id}/frames?limit=1000`)).json()) as { frames: { frame: number; url: string }[] };
    const frames = new Map<number, Buffer>();
    for (const f of list.frames) frames.set(f.frame, Buffer.from(await (await fetch(`${master.url}${f.url}`)).arrayBuffer()));
    const tasks = (await (await fetch(`${master.url}/jobs/${job.job_id}/tasks`)).json()) as { tasks: { start_frame: number; end_frame: number }[] };
    console.log(`  farm (${label}): ${tasks.tasks.length} tasks: ${tasks.tasks.map((t) => `${t.start_frame}-${t.end_frame}`).join(', ')}`);
    return { seconds, frames };
  } finally {
    await node.stop();
    await master.stop();
  }
}

/** Polls job_status every 50 ms (cheap next to frames of a second) until the job ends. */
async function pollJob(url: string, jobId: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const status = ((await (await fetch(`${url}/job_status/${jobId}`)).json()) as { status: string }).status;
    if (['completed', 'failed', 'canceled'].includes(status)) return status;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`job ${jobId} did not finish in ${timeoutMs} ms`);
}

export async function benchFarmVsPlain(opts: FarmVsPlainOptions): Promise<FarmVsPlainResult> {
  const dir = tempDir('bench-farm-vs-plain');
  const blend = join(dir, 'anim.blend');
  makeScene('make_anim_scene.py', [blend, '--frames', String(opts.frames), '--width', String(opts.width), '--height', String(opts.height), ...(opts.bake ? [] : ['--no-bake'])]);
  console.log(`farm vs plain: ${opts.frames} frames of ${opts.width}x${opts.height}, particle simulation ${opts.bake ? 'baked' : 'live (unbaked)'}, ${opts.threads} threads, one node`);

  const plain = (out: string) => execFileAsync(BLENDER, [...BLENDER_BASE, blend, '-o', join(dir, out, 'f_######'), '-x', '1', '-t', String(opts.threads), '-s', '1', '-e', String(opts.frames), '-a']);
  const [plainBefore] = await timed(() => plain('plain'));
  report('plain blender -a (before)', plainBefore, 's');

  const hot = await farmRun(blend, opts, 'hot', []);
  report('farm, hot Blender (submit to completed)', hot.seconds, 's');
  // The node makes a JPEG preview of every frame for the dashboard (ffmpeg or Blender): CPU that
  // plain Blender does not spend. The same run without it shows what the previews cost.
  const noPreviews = await farmRun(blend, opts, 'hot-no-previews', [], { FARM_PREVIEWS: 'off' });
  report('farm, hot Blender, FARM_PREVIEWS=off', noPreviews.seconds, 's');
  let cold: { seconds: number } | null = null;
  if (opts.cold) {
    cold = await farmRun(blend, opts, 'cold', ['--no-hot']);
    report('farm, --no-hot (a process per task)', cold.seconds, 's');
  }

  const [perFrame] = await timed(async () => {
    for (let f = 1; f <= opts.frames; f++) {
      await execFileAsync(BLENDER, [...BLENDER_BASE, blend, '-o', join(dir, 'per-frame', 'f_######'), '-x', '1', '-t', String(opts.threads), '-f', String(f)]);
    }
  });
  report('one blender -f N process per frame', perFrame, 's');
  const [plainAfter] = await timed(() => plain('plain-after'));
  report('plain blender -a (after)', plainAfter, 's');
  const plainS = (plainBefore + plainAfter) / 2;

  let identical = 0;
  for (let f = 1; f <= opts.frames; f++) {
    const reference = decodePng(readFileSync(join(dir, 'plain', `f_${String(f).padStart(6, '0')}.png`))).pixelHash;
    const farmFrame = hot.frames.get(f);
    if (farmFrame && decodePng(farmFrame).pixelHash === reference) identical++;
  }
  report('farm frames pixel-identical to plain -a', `${identical} / ${opts.frames}`);

  console.log('ratios (plain = mean of before and after):');
  verdict('farm (hot) / plain', hot.seconds / plainS, '<= 1.05', hot.seconds / plainS <= 1.05);
  report('farm (hot, no previews) / plain', noPreviews.seconds / plainS);
  if (cold) report('farm (--no-hot) / plain', cold.seconds / plainS);
  report('one process per frame / plain', perFrame / plainS);
  return { plainS, farmS: hot.seconds, farmColdS: cold?.seconds ?? null, farmNoPreviewsS: noPreviews.seconds, perFrameS: perFrame, identical };
}

if (isMain(import.meta)) {
  const { values } = parseArgs({
    options: {
      frames: { type: 'string', default: '24' },
      width: { type: 'string', default: '256' },
      height: { type: 'string', default: '192' },
      threads: { type: 'string', default: '2' },
      bake: { type: 'boolean', default: false },
      'no-cold': { type: 'boolean', default: false },
    },
  });
  runBench(async () => {
    console.log(`machine: ${machineInfo()}`);
    const result = await benchFarmVsPlain({
      frames: Number(values.frames),
      width: Number(values.width),
      height: Number(values.height),
      threads: Number(values.threads),
      bake: values.bake!,
      cold: !values['no-cold'],
    });
    return result.identical === Number(values.frames) ? 0 : 1;
  });
}
