/**
 * How many renders a node runs at once, and on which devices. Cycles on one GPU leaves the
 * others idle, and several GPUs in one Blender process scale worse than one process per GPU
 * (each waits for the slowest at every sample pass), so by default each GPU gets its own slot,
 * that is its own Blender process and its own task.
 */
import { backendOfType, type CyclesDevice, type GpuBackend, type RenderBackend } from './detect-devices.ts';
import { GPU_BACKEND_PREFERENCE } from './device-requirement.ts';
import { BACKEND_DISPLAY_NAMES, cpuOnlyExpr, enableDevicesExpr } from './enable-devices.ts';

export interface RenderSlot {
  index: number;
  backend: RenderBackend;
  /** Cycles device ids this slot renders with; empty for the CPU slot. */
  deviceIds: string[];
  /** For logs and the node list, e.g. "GPU 1: NVIDIA RTX A4000 (OptiX)". */
  label: string;
  /** The --python-expr that puts a Blender process on this slot's devices. */
  pythonExpr: string;
}

export interface PlanSlotsOptions {
  /** One slot rendering on every GPU at once, instead of one slot per GPU. */
  allInOne?: boolean;
  /** The backend to use; by default the best one present (see GPU_BACKEND_PREFERENCE). */
  backend?: GpuBackend;
}

/**
 * Plans the node's render slots from its detected GPUs: one per GPU of the chosen backend, or
 * one with all of them when `allInOne`; a single CPU slot when there is no GPU. A physical
 * card listed under two backends (CUDA and OptiX) counts once, since only one backend is used.
 * Throws when `backend` is asked for and has no device.
 */
export function planRenderSlots(devices: readonly CyclesDevice[], options: PlanSlotsOptions = {}): RenderSlot[] {
  const present = (backend: GpuBackend) => devices.some((d) => backendOfType(d.type) === backend);
  const backend = options.backend ?? GPU_BACKEND_PREFERENCE.find(present);
  if (backend === undefined) {
    return [{ index: 0, backend: 'cpu', deviceIds: [], label: 'CPU', pythonExpr: cpuOnlyExpr }];
  }
  const gpus = devices.filter((d) => backendOfType(d.type) === backend);
  const shown = BACKEND_DISPLAY_NAMES[backend];
  if (gpus.length === 0) throw new Error(`no ${shown} device on this node to plan render slots on`);
  if (options.allInOne) {
    const deviceIds = gpus.map((d) => d.id);
    return [{ index: 0, backend, deviceIds, label: `${gpus.length} GPUs (${shown})`, pythonExpr: enableDevicesExpr({ backend, deviceIds }) }];
  }
  return gpus.map((gpu, index) => ({
    index,
    backend,
    deviceIds: [gpu.id],
    label: `GPU ${index}: ${gpu.name} (${shown})`,
    pythonExpr: enableDevicesExpr({ backend, deviceIds: [gpu.id] }),
  }));
}
