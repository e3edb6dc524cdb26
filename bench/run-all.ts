/**
 * Runs the benchmarks one after another (`npm run bench`) and prints a summary. Each one
 * measures its baseline in the same run, so the ratios compare like with like; the absolute
 * figures depend on the machine and on whatever else it is doing.
 *
 *   npm run bench                      all eight
 *   npm run bench -- dispatch pickup   some, by name: farm, dispatch, submit, memory, pickup, idle, scale, cost
 */
import { benchCost } from './cost.ts';
import { benchDispatch } from './dispatch.ts';
import { benchFarmVsPlain } from './farm-vs-plain.ts';
import { benchIdle } from './idle.ts';
import { machineInfo, runBench } from './lib.ts';
import { benchMemory } from './memory.ts';
import { benchPickup } from './pickup-latency.ts';
import { benchScale } from './scale.ts';
import { benchSubmitScaling } from './submit-scaling.ts';

const BENCHES: Record<string, () => Promise<string>> = {
  farm: async () => {
    const r = await benchFarmVsPlain({ frames: 24, width: 480, height: 360, threads: 2, repeats: 2, bake: false, quick: false });
    const ratio = (run: { wallS: number; cpuS: number } | null) =>
      run ? `${(run.wallS / r.plain.wallS).toFixed(3)} wall / ${(run.cpuS / r.plain.cpuS).toFixed(3)} CPU` : '-';
    return `farm/plain ${r.pairs.wall.toFixed(3)} wall / ${r.pairs.cpu.toFixed(3)} CPU, median of pairs (goal <= 1.05 wall); medians ${ratio(r.farm)}; every preview ${ratio(r.farmAllPreviews)}; --no-hot ${ratio(r.farmCold)}; per-frame ${ratio(r.perFrame)}; identical frames ${r.identical}/24`;
  },
  dispatch: async () => {
    const r = await benchDispatch({ nodes: 32, seconds: 5 });
    return `claims ${r.claimRate.toFixed(0)}/s = ${(r.claimRate / r.noopRate).toFixed(3)}x no-op (goal >= 0.8 and >= 1000/s); tasks ${r.taskRate.toFixed(0)}/s = ${(r.taskRate / r.noopRate).toFixed(3)}x (goal >= 0.2); duplicates ${r.duplicates}`;
  },
  submit: async () => {
    const r = await benchSubmitScaling({ rounds: 20 });
    return `1M/10 frames ${(r.largeMs / r.smallMs).toFixed(3)} (goal <= 1.5)`;
  },
  memory: async () => {
    const r = await benchMemory({ mib: 1024 });
    return `master +${r.masterGrowthMb.toFixed(0)} MB (goal <= 64); node peak ${Math.max(r.nodeDownloadPeakMb, r.nodeRenderPeakMb).toFixed(0)} MB (goal <= 150)`;
  },
  pickup: async () => {
    const r = await benchPickup({ rounds: 8 });
    return `submit to running median ${r.medianMs.toFixed(0)} ms, max ${r.maxMs.toFixed(0)} ms (goal <= 1000 ms)`;
  },
  idle: async () => {
    const r = await benchIdle({ nodes: 2, seconds: 60, baselineSeconds: 15, frames: 2 });
    return `${r.writesPerNodeMinute.toFixed(3)} storage writes per idle node-minute (goal <= 1; ${r.commitsPerNodeMinute.toFixed(2)} commits with local bookkeeping); answer to first claim ${r.claimMs.toFixed(0)} ms (goal <= 1000 ms)`;
  },
  scale: async () => {
    const r = await benchScale({ nodes: 1000, seconds: 60, waitMs: 20_000 });
    return `${r.nodes} waiting nodes: ${r.rowsChangedPerNodeMinute.toFixed(3)} rows written per node-minute (goal <= 1; ${r.commitsPerNodeMinute.toFixed(3)} commits with local bookkeeping); all holding a frame after ${r.allHoldSeconds?.toFixed(2) ?? 'never'} s; ${r.duplicates} frames handed out twice (goal 0)`;
  },
  cost: async () => {
    const r = await benchCost({ frames: 8, idleSeconds: 60 });
    return `per 1,000 frames ${Math.round(r.per1000Frames.requests)} requests, ${Math.round(r.per1000Frames.d1Written)} D1 rows written; per idle node-hour ${Math.round(r.perIdleNodeHour.requests)} requests, ${Math.round(r.perIdleNodeHour.d1Written)} rows written; 10 nodes x 10,000 frames/day ${r.fitsFreePlan ? 'fits' : 'does not fit'} the Free plan`;
  },
};

runBench(async () => {
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((name) => !(name in BENCHES));
  if (unknown.length > 0) throw new Error(`unknown benchmark(s) ${unknown.join(', ')}; pick from ${Object.keys(BENCHES).join(', ')}`);
  console.log(`machine: ${machineInfo()}\n`);
  const summary: string[] = [];
  for (const name of wanted.length > 0 ? wanted : Object.keys(BENCHES)) {
    console.log(`=== ${name}`);
    try {
      summary.push(`${name}: ${await BENCHES[name]!()}`);
    } catch (err) {
      console.error(`${name} failed: ${(err as Error).stack ?? err}`);
      summary.push(`${name}: FAILED (${(err as Error).message})`);
    }
    console.log('');
  }
  console.log('summary:');
  for (const line of summary) console.log(`  ${line}`);
});
