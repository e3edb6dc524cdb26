/**
 * What a node may claim, as the scheduler's claim decides it (db/claims.ts): a job's device
 * requirement against the node's backends, and its tags against the node's. The render node's
 * own device choice (worker-node/gpu/device-requirement.ts chooseBackend) is tested with the
 * GPU detection (test/worker-node/gpu-detect.test.ts).
 */
import { expect, it } from 'vitest';
import type { RegisterWorkerRequest, RegisterWorkerResponse } from '../../protocol/schemas.ts';
import { claimAll, json, postJson, submitOk } from './helpers.ts';

const CPU = [{ type: 'CPU', name: 'EPYC' }];
const TWO_GPUS = [...CPU, { type: 'CUDA', name: 'RTX A4000' }, { type: 'OPTIX', name: 'RTX A4000' }];

async function node(name: string, extra: Partial<RegisterWorkerRequest>): Promise<string> {
  return (await json<RegisterWorkerResponse>(await postJson('/register_worker', { name, ...extra }), 201)).worker_id;
}

/** Every job `workerId` claims until it gets no more work. */
const claimedJobs = async (workerId: string): Promise<string[]> => (await claimAll(workerId)).map((t) => t.job_id);

it('a CPU-only node claims CPU and untagged jobs but no GPU job; a GPU node claims the GPU jobs whose tags it carries', async () => {
  const cpu = await node('cpu-only', { devices: CPU });
  const gpu = await node('two-gpus', { devices: TWO_GPUS, tags: ['studio-a', 'big-vram'] });
  const gpuJob = await submitOk({ start_frame: 1, end_frame: 1, device: 'gpu' });
  const cudaJob = await submitOk({ start_frame: 1, end_frame: 1, device: 'cuda' });
  const optixJob = await submitOk({ start_frame: 1, end_frame: 1, device: 'optix' });
  const cpuJob = await submitOk({ start_frame: 1, end_frame: 1, device: 'cpu' });
  const bigVram = await submitOk({ start_frame: 1, end_frame: 1, device: 'gpu', tags: 'big-vram' });
  // Nobody here carries studio-b: this one waits.
  await submitOk({ start_frame: 1, end_frame: 1, device: 'gpu', tags: 'studio-b' });

  // A job without tags runs on a node without tags; nothing needing a GPU goes to the CPU.
  expect(await claimedJobs(cpu)).toEqual([cpuJob.job_id]);
  // The GPU node takes every GPU job, by any backend it has, whose tags it carries.
  expect(await claimedJobs(gpu)).toEqual([gpuJob.job_id, cudaJob.job_id, optixJob.job_id, bigVram.job_id]);
});
