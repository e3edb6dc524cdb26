/**
 * Which devices a claimed task renders on, from the job's device requirement and the GPUs of
 * the render slot that claimed it, and the Blender snippet that puts it there.
 */
import type { DeviceRequirement } from '../../protocol/schemas.ts';
import { backendOfType, GPU_DEVICE_TYPES, type CyclesDevice, type RenderBackend } from './detect-devices.ts';
import { chooseBackend } from './device-requirement.ts';
import { enableDevicesExpr } from './enable-devices.ts';

export interface TaskDevice {
  backend: RenderBackend;
  /** `--python-expr` snippets to run after the file loads: none for the CPU. */
  pythonExprs: string[];
  /** Names the setting, so a hot Blender started for another one is not reused. */
  key: string;
}

/** The backends of `gpus` plus the CPU, as chooseBackend takes them. */
export function backendsOf(gpus: readonly CyclesDevice[]): RenderBackend[] {
  return ['cpu', ...GPU_DEVICE_TYPES.filter((type) => gpus.some((d) => d.type === type)).map(backendOfType)];
}

/**
 * The backend a task with `requirement` renders with on a slot with `gpus` (its own GPUs, as
 * Cycles lists them; none on a CPU-only node), and the snippet that turns on exactly this
 * slot's devices of it. The CPU needs no snippet: every render runs with --factory-startup,
 * whose preferences render on the CPU. Null when the slot cannot meet the requirement (the
 * master should not have sent the task).
 */
export function taskDevice(requirement: DeviceRequirement, gpus: readonly CyclesDevice[]): TaskDevice | null {
  const backend = chooseBackend(requirement, backendsOf(gpus));
  if (backend === null) return null;
  if (backend === 'cpu') return { backend, pythonExprs: [], key: 'cpu' };
  const deviceIds = gpus.filter((d) => backendOfType(d.type) === backend).map((d) => d.id);
  return { backend, pythonExprs: [enableDevicesExpr({ backend, deviceIds })], key: `${backend}:${deviceIds.join('|')}` };
}
