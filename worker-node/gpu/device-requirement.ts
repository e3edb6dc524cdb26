/**
 * Whether a node may take a job, by the job's device requirement and tags, and which backend
 * it then renders with. The master's scheduler applies the same rule when it hands out work;
 * the node uses it to pick the backend for a claimed task.
 */
import type { DeviceRequirement } from '../../protocol/schemas.ts';
import type { GpuBackend, RenderBackend } from './detect-devices.ts';

/**
 * What a job asks for: `any` (the node's best: its GPU if it has one), `cpu`, `gpu` (any GPU
 * backend) or one backend by name. Defined in the protocol, which the master shares.
 */
export { DEVICE_REQUIREMENTS, type DeviceRequirement } from '../../protocol/schemas.ts';

/**
 * GPU backends from best to worst where one card offers several: OptiX uses the RT cores of
 * the NVIDIA cards that CUDA also drives, and is the faster of the two there.
 */
export const GPU_BACKEND_PREFERENCE: readonly GpuBackend[] = ['optix', 'cuda', 'hip', 'oneapi', 'metal'];

/**
 * The backend a node with `backends` (as in CyclesDeviceReport) renders a job with, or null
 * when it cannot run the job at all: a `gpu` or named-backend job on a node without it.
 */
export function chooseBackend(requirement: DeviceRequirement, backends: readonly RenderBackend[]): RenderBackend | null {
  const bestGpu = GPU_BACKEND_PREFERENCE.find((b) => backends.includes(b)) ?? null;
  switch (requirement) {
    case 'any':
      return bestGpu ?? 'cpu';
    case 'cpu':
      // Every node can render on its CPU.
      return 'cpu';
    case 'gpu':
      return bestGpu;
    default:
      return backends.includes(requirement) ? requirement : null;
  }
}

/** True when the node carries every tag the job asks for (a job without tags runs anywhere). */
export function tagsSatisfied(jobTags: readonly string[], nodeTags: readonly string[]): boolean {
  return jobTags.every((tag) => nodeTags.includes(tag));
}

/** Whether a node may claim a job: its device requirement can be met and its tags are carried. */
export function canRunJob(
  job: { device: DeviceRequirement; tags: readonly string[] },
  node: { backends: readonly RenderBackend[]; tags: readonly string[] },
): boolean {
  return chooseBackend(job.device, node.backends) !== null && tagsSatisfied(job.tags, node.tags);
}
