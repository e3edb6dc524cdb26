/**
 * Which Cycles devices this node can render with, asked of Blender itself: the GPUs Blender
 * can use are the ones that matter, whatever the system's drivers say. Run once at start; the
 * answer goes into the node's registration.
 */
import { z } from 'zod';
import { blenderArgs } from '../blender/launch.ts';
import { runProcess } from '../process/run-process.ts';

/** Cycles' GPU backends, in Blender's spelling (its `compute_device_type` values). */
export const GPU_DEVICE_TYPES = ['CUDA', 'OPTIX', 'HIP', 'ONEAPI', 'METAL'] as const;
export type GpuDeviceType = (typeof GPU_DEVICE_TYPES)[number];

/** A backend as jobs name it in their device requirement: lower case, `cpu` included. */
export type RenderBackend = 'cpu' | Lowercase<GpuDeviceType>;
export type GpuBackend = Exclude<RenderBackend, 'cpu'>;

/** One GPU as Cycles lists it for one backend. */
export interface CyclesDevice {
  type: GpuDeviceType;
  name: string;
  /**
   * Cycles' persistent id, what enableDevicesExpr takes, e.g. `CUDA_NVIDIA GeForce RTX 3090_0000:01:00`.
   * One physical NVIDIA card is listed twice, under CUDA and under OPTIX, with different ids.
   */
  id: string;
  /**
   * Total device memory in MiB, when known. Blender's Python API (3.4, and still 4.x) does not
   * expose it; for CUDA and OptiX devices it comes from nvidia-smi, matched by PCI address.
   */
  memoryMb?: number;
}

export interface CyclesDeviceReport {
  /** `bpy.app.version_string`, e.g. "3.4.1". */
  blenderVersion: string;
  /** `cpu` first (Cycles always has it), then each backend with at least one device. */
  backends: RenderBackend[];
  /** GPUs only, grouped by backend in GPU_DEVICE_TYPES order. */
  devices: CyclesDevice[];
  /** The CPU as Cycles names it; null if Blender would not say. */
  cpuName: string | null;
  /** Backends this Blender build offers on this OS, with or without a device behind them. */
  compiledTypes: GpuDeviceType[];
  /** Problems met while listing (a backend whose driver failed to load), for the node's log. */
  errors: string[];
}

/** Marks the one line of Blender's output that carries the report. */
const DEVICES_LINE_PREFIX = 'FARM_CYCLES_DEVICES ';

/**
 * The Python run by detectCyclesDevices: prints DEVICES_LINE_PREFIX and one JSON object.
 * Setting `compute_device_type` to a backend the build or OS lacks raises TypeError in 3.4
 * (the enum is built per machine), which is how a backend is found missing.
 */
export const DETECT_DEVICES_SCRIPT = `
import json
import bpy

report = {"blender": bpy.app.version_string, "compiled": [], "devices": [], "cpu": None, "errors": []}
try:
    prefs = bpy.context.preferences.addons["cycles"].preferences
except KeyError:
    prefs = None
    report["errors"].append("the Cycles add-on is not enabled")
if prefs is not None:
    for backend in ${JSON.stringify(GPU_DEVICE_TYPES).replaceAll(',', ', ')}:
        try:
            prefs.compute_device_type = backend
        except TypeError:
            continue
        report["compiled"].append(backend)
        try:
            # Refreshes the device list for every backend first; deprecated in 3.x, needed in 2.9x.
            prefs.get_devices()
            found = prefs.get_devices_for_type(backend)
        except Exception as error:
            report["errors"].append("listing %s devices: %s" % (backend, error))
            continue
        for device in found:
            # get_devices_for_type adds the CPU to a non-empty GPU list; it is reported apart.
            if device.type == backend:
                report["devices"].append({"type": device.type, "name": device.name, "id": device.id})
try:
    import _cycles
    report["cpu"] = next((d[0] for d in _cycles.available_devices("CPU") if d[1] == "CPU"), None)
except Exception as error:
    report["errors"].append("listing the CPU: %s" % error)
print(${JSON.stringify(DEVICES_LINE_PREFIX)} + json.dumps(report), flush=True)
`;

const scriptReportSchema = z.object({
  blender: z.string(),
  compiled: z.array(z.enum(GPU_DEVICE_TYPES)),
  devices: z.array(z.object({ type: z.enum(GPU_DEVICE_TYPES), name: z.string(), id: z.string() })),
  cpu: z.string().nullable(),
  errors: z.array(z.string()),
});

/** Long enough for a CUDA driver to initialise on a busy machine; a hung driver must not hang the node. */
const DETECT_TIMEOUT_MS = 120_000;
const NVIDIA_SMI_TIMEOUT_MS = 20_000;

export interface DetectOptions {
  /** nvidia-smi to ask for memory sizes; false to skip. Default `nvidia-smi` on PATH. */
  nvidiaSmi?: string | false;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Runs Blender (blender/launch.ts) with `--python-expr DETECT_DEVICES_SCRIPT` and returns the GPUs
 * Cycles can use, grouped by backend, plus a `backends` summary (`['cpu']` on a machine
 * without a usable GPU). Throws, with Blender's last output lines, when Blender fails or
 * prints no report.
 */
export async function detectCyclesDevices(blender: string, options: DetectOptions = {}): Promise<CyclesDeviceReport> {
  const timeout = AbortSignal.timeout(options.timeoutMs ?? DETECT_TIMEOUT_MS);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  const args = blenderArgs(null, ['--python-exit-code', '1', '--python-expr', DETECT_DEVICES_SCRIPT]);
  const result = await runProcess(blender, args, { signal, tailLines: 200 });
  const failed = result.aborted ? 'timed out or was cancelled' : result.exitCode !== 0 ? `exited with ${result.exitCode ?? result.signal}` : null;
  let report: CyclesDeviceReport | undefined;
  try {
    report = failed ? undefined : parseDetectDevicesOutput(result.tail);
  } catch (err) {
    throw new Error(`detecting Cycles devices: ${(err as Error).message}\n${result.tail.slice(-20).join('\n')}`, { cause: err });
  }
  if (!report) throw new Error(`detecting Cycles devices: Blender ${failed}\n${result.tail.slice(-20).join('\n')}`);

  const wantsMemory = report.devices.some((d) => d.type === 'CUDA' || d.type === 'OPTIX');
  if (wantsMemory && options.nvidiaSmi !== false) {
    const memoryByPci = await readNvidiaMemory(options.nvidiaSmi ?? 'nvidia-smi', options.signal);
    report.devices = report.devices.map((device) => {
      const memoryMb = memoryByPci.get(pciAddressOfCyclesId(device.id) ?? '');
      return memoryMb === undefined ? device : { ...device, memoryMb };
    });
  }
  return report;
}

/**
 * Reads the report line from the detection run's output lines (the last one wins). Throws
 * when there is none or it does not have the script's shape.
 */
export function parseDetectDevicesOutput(lines: readonly string[]): CyclesDeviceReport {
  const line = lines.findLast((l) => l.startsWith(DEVICES_LINE_PREFIX));
  if (line === undefined) throw new Error(`Blender printed no line starting with "${DEVICES_LINE_PREFIX.trim()}"`);
  const parsed = scriptReportSchema.safeParse(safeJson(line.slice(DEVICES_LINE_PREFIX.length)));
  if (!parsed.success) throw new Error(`the device report is not what the script prints: ${parsed.error.message}`);
  const raw = parsed.data;
  const devices = GPU_DEVICE_TYPES.flatMap((type) => raw.devices.filter((d) => d.type === type));
  const backends: RenderBackend[] = ['cpu', ...GPU_DEVICE_TYPES.filter((t) => devices.some((d) => d.type === t)).map(backendOfType)];
  return { blenderVersion: raw.blender, backends, devices, cpuName: raw.cpu, compiledTypes: raw.compiled, errors: raw.errors };
}

/** `CUDA` -> `cuda`. */
export function backendOfType(type: GpuDeviceType): GpuBackend {
  return type.toLowerCase() as GpuBackend;
}

/** `cuda` -> `CUDA`. */
export function typeOfBackend(backend: GpuBackend): GpuDeviceType {
  return backend.toUpperCase() as GpuDeviceType;
}

/**
 * The PCI address inside a Cycles device id, as `dddd:bb:dd` in lower case. Cycles builds
 * CUDA and HIP ids as `<TYPE>_<name>_%04x:%02x:%02x` (domain, bus, device) and OptiX ids
 * from the CUDA id with a suffix, so the last such group is the address. Undefined for ids
 * without one (Metal, oneAPI).
 */
export function pciAddressOfCyclesId(id: string): string | undefined {
  const matches = [...id.matchAll(/([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})/gi)];
  const last = matches.at(-1);
  return last ? `${last[1]}:${last[2]}:${last[3]}`.toLowerCase() : undefined;
}

/**
 * Parses `nvidia-smi --query-gpu=pci.bus_id,memory.total --format=csv,noheader,nounits`
 * (lines like `00000000:01:00.0, 24576`) into MiB by PCI address in Cycles' form
 * (`0000:01:00`: the domain's last four digits, bus, device; the function is dropped).
 */
export function parseNvidiaSmiMemory(csv: string): Map<string, number> {
  const memory = new Map<string, number>();
  for (const line of csv.split(/\r?\n/)) {
    const match = /^\s*(?:[0-9a-f]*?)([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})(?:\.[0-9a-f])?\s*,\s*(\d+)\s*$/i.exec(line);
    if (match) memory.set(`${match[1]}:${match[2]}:${match[3]}`.toLowerCase(), Number(match[4]));
  }
  return memory;
}

/** MiB by PCI address from nvidia-smi; empty when it is missing or fails (memory is only informative). */
async function readNvidiaMemory(nvidiaSmi: string, signal?: AbortSignal): Promise<Map<string, number>> {
  const timeout = AbortSignal.timeout(NVIDIA_SMI_TIMEOUT_MS);
  try {
    const result = await runProcess(nvidiaSmi, ['--query-gpu=pci.bus_id,memory.total', '--format=csv,noheader,nounits'], {
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      tailLines: 1000,
    });
    return result.exitCode === 0 ? parseNvidiaSmiMemory(result.tail.join('\n')) : new Map();
  } catch {
    // Not installed: runProcess rejects when the command cannot start.
    return new Map();
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
