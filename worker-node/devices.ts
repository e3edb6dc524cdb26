/**
 * What a node can render with, reported when it registers and shown by `farm nodes` and the
 * dashboard: the CPU (from the operating system) and the GPUs Cycles sees (from Blender itself,
 * which knows every backend: OptiX, CUDA, HIP, Metal, oneAPI). Asking Blender costs one start of
 * it when the node starts, so it is skipped on a Linux machine without any GPU driver; when it
 * fails the node reports its CPU alone.
 */
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Device } from '../protocol/schemas.ts';

const run = promisify(execFile);

const LIST_GPUS = `
import json
import bpy
prefs = bpy.context.preferences.addons["cycles"].preferences
found = []
for kind in ("OPTIX", "CUDA", "HIP", "METAL", "ONEAPI"):
    try:
        devices = prefs.get_devices_for_type(kind)
    except Exception:
        continue
    for d in devices:
        if d.type != "CPU":
            found.append({"type": d.type, "name": d.name})
print("FARM_DEVICES " + json.dumps(found))
`;

/** The CPU as one device: model and thread count. */
export function cpuDevice(): Device {
  const list = cpus();
  const model = (list[0]?.model ?? 'unknown CPU').replace(/\s+/g, ' ').trim();
  return { type: 'CPU', name: `${model} (${list.length} threads)`.slice(0, 200) };
}

/** Parses the line the script prints; devices of unexpected shape are dropped. */
export function parseGpuList(stdout: string): Device[] {
  const line = stdout.split('\n').find((l) => l.startsWith('FARM_DEVICES '));
  if (!line) return [];
  try {
    const value = JSON.parse(line.slice('FARM_DEVICES '.length)) as unknown;
    if (!Array.isArray(value)) return [];
    return value
      .filter((d): d is Device => typeof d?.type === 'string' && typeof d?.name === 'string')
      .slice(0, 32)
      .map((d) => ({ type: d.type.slice(0, 20), name: d.name.slice(0, 200) }));
  } catch {
    return [];
  }
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

/** The node's devices: its CPU, then the GPUs Blender finds (none when asking fails). */
export async function detectDevices(blender: string, onError: (message: string) => void = () => {}): Promise<Device[]> {
  if (!mayHaveGpu()) return [cpuDevice()];
  try {
    const { stdout } = await run(blender, ['-b', '--factory-startup', '-noaudio', '--python-expr', LIST_GPUS], { timeout: 60_000, maxBuffer: 4 * 1024 * 1024 });
    return [cpuDevice(), ...parseGpuList(stdout)];
  } catch (err) {
    onError(`asking Blender for GPUs: ${(err as Error).message.split('\n')[0]}`);
    return [cpuDevice()];
  }
}
