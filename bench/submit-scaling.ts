/**
 * Benchmark 3, submit scaling: submitting a job of 1,000,000 frames must cost about what a job
 * of 10 frames costs (the master stores one jobs row, not a row per frame or per task).
 *
 * Both sizes are submitted alternately with the seed's multipart `POST /submit_job` on the same
 * master, and the median times compared.
 *
 *   node bench/submit-scaling.ts [--rounds 20]
 */
import { parseArgs } from 'node:util';
import { BENCH_MASTER_VARS, isMain, machineInfo, median, report, runBench, startMaster, verdict } from './lib.ts';

export interface SubmitScalingResult {
  smallMs: number;
  largeMs: number;
}

export async function benchSubmitScaling(options: { rounds: number }): Promise<SubmitScalingResult> {
  console.log(`submit scaling: 10 frames vs 1,000,000 frames, ${options.rounds} submissions each, alternating`);
  const master = await startMaster({ name: 'bench-submit', vars: BENCH_MASTER_VARS });
  try {
    // A small valid-looking .blend: the same bytes every time, stored once (by SHA-256).
    const blend = new Blob([Buffer.concat([Buffer.from('BLENDER-v304'), Buffer.alloc(64 * 1024, 7)])]);
    const submit = async (frames: number) => {
      const form = new FormData();
      form.set('blend_file', blend, 'scene.blend');
      form.set('start_frame', '1');
      form.set('end_frame', String(frames));
      const started = performance.now();
      const response = await fetch(`${master.url}/submit_job`, { method: 'POST', body: form });
      const body = await response.text();
      const ms = performance.now() - started;
      if (response.status !== 201) throw new Error(`submit_job answered ${response.status}: ${body}`);
      return ms;
    };
    // Warm-up: the first request compiles routes and stores the blend.
    for (let i = 0; i < 3; i++) await submit(10);
    const small: number[] = [];
    const large: number[] = [];
    for (let i = 0; i < options.rounds; i++) {
      small.push(await submit(10));
      large.push(await submit(1_000_000));
    }
    const smallMs = median(small);
    const largeMs = median(large);
    console.log('results:');
    report('submit 10 frames (median)', smallMs, 'ms');
    report('submit 1,000,000 frames (median)', largeMs, 'ms');
    verdict('1,000,000 frames / 10 frames', largeMs / smallMs, '<= 1.5', largeMs / smallMs <= 1.5);
    return { smallMs, largeMs };
  } finally {
    await master.stop();
  }
}

if (isMain(import.meta)) {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '20' } } });
  runBench(async () => {
    console.log(`machine: ${machineInfo()}`);
    await benchSubmitScaling({ rounds: Number(values.rounds) });
  });
}
