/**
 * Which backend a node renders a claimed task with, by its job's device requirement. Which jobs
 * a node may claim at all (device and tags) is the master's claim's (edge/db/claims.ts).
 */
import type { DeviceRequirement } from '../../protocol/schemas.ts';
import type { GpuBackend, RenderBackend } from './detect-devices.ts';

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
