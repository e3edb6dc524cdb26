/**
 * What a node can render with, reported when it registers and shown by `farm nodes` and the
 * dashboard: the CPU (from the operating system) and the GPUs Cycles sees, as Blender itself
 * reports them (gpu/detect-devices.ts: OptiX, CUDA, HIP, Metal, oneAPI). Asking Blender costs one
 * start of it when the node starts, so it is skipped on a Linux machine without any GPU driver;
 * when it fails the node reports its CPU alone.
 */
import { readdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import type { Device } from '../protocol/schemas.ts';
import { detectCyclesDevices, type CyclesDeviceReport } from './gpu/detect-devices.ts';

/** The CPU as one device: model and thread count. */
export function cpuDevice(model?: string | null): Device {
  const list = cpus();
  const name = (model ?? list[0]?.model ?? 'unknown CPU').replace(/\s+/g, ' ').trim();
  return { type: 'CPU', name: `${name} (${list.length} threads)`.slice(0, 200) };
}

/** The devices to report from Blender's Cycles device report: the CPU, then each GPU. */
export function devicesFromReport(report: CyclesDeviceReport): Device[] {
  const gpus = report.devices.slice(0, 32).map((d) => ({
    type: d.type.slice(0, 20),
    name: `${d.name}${d.memoryMb ? ` (${Math.round(d.memoryMb / 1024)} GiB)` : ''}`.slice(0, 200),
  }));
  return [cpuDevice(report.cpuName), ...gpus];
}

/**
 * Whether this machine may have a GPU worth asking Blender about. On Linux a GPU driver shows up
 * as a device file (NVIDIA: /dev/nvidia*, AMD: /dev/kfd, Intel and others: /dev/dri/renderD*),
 * so a machine without one skips the Blender start; macOS (Metal) and Windows are always asked.
 */
export function mayHaveGpu(platform: NodeJS.Platform = process.platform, devDir = '/dev'): boolean {
  if (platform !== 'linux') return true;
  try {
    if (readdirSync(devDir).some((name) => /^nvidia\d|^nvidiactl$|^kfd$/.test(name))) return true;
    return readdirSync(join(devDir, 'dri')).some((name) => name.startsWith('renderD'));
  } catch {
    return false;
  }
}

/**
 * Blender's report of the GPUs Cycles can use, which the render slots are planned on; null on
 * a machine without a GPU driver or when asking fails (the node then renders on its CPU).
 */
export async function detectGpus(blender: string, onError: (message: string) => void = () => {}): Promise<CyclesDeviceReport | null> {
  if (!mayHaveGpu()) return null;
  try {
    return await detectCyclesDevices(blender);
  } catch (err) {
    onError(`asking Blender for GPUs: ${(err as Error).message.split('\n')[0]}`);
    return null;
  }
}
