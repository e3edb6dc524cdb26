/**
 * The `--python-expr` snippets that choose Cycles' render device. Every render runs with
 * --factory-startup, which resets the user preferences, and the compute device (CUDA, OptiX,
 * ...) and the chosen GPUs live in the preferences, not in the .blend: without a snippet a
 * scene saved with "GPU Compute" silently renders on the CPU. That is why Flamenco users lose
 * GPU rendering; the node sets the preferences itself, after the file loads.
 */
import type { GpuBackend } from './detect-devices.ts';
import { typeOfBackend } from './detect-devices.ts';

/** How Blender's interface writes each backend, for messages a person reads. */
export const BACKEND_DISPLAY_NAMES: Record<GpuBackend, string> = {
  cuda: 'CUDA',
  optix: 'OptiX',
  hip: 'HIP',
  oneapi: 'oneAPI',
  metal: 'Metal',
};

export interface EnableDevicesSpec {
  backend: GpuBackend;
  /** Cycles device ids (CyclesDevice.id) to render with; all devices of the backend when omitted. */
  deviceIds?: readonly string[];
}

/**
 * A one-line snippet for `--python-expr` that sets the compute device type to `backend`,
 * turns on only the chosen devices of it (and off every other device, the CPU included, so a
 * render slot keeps to its GPU), and sets every scene to render on the GPU. When the backend
 * or a chosen device is missing it raises RuntimeError with a message such as "CUDA not
 * available on this node: ...", which fails the render (buildRenderArgs passes
 * --python-exit-code 1) instead of letting it fall back to the CPU unnoticed.
 */
export function enableDevicesExpr(spec: EnableDevicesSpec): string {
  const type = typeOfBackend(spec.backend);
  const shown = BACKEND_DISPLAY_NAMES[spec.backend];
  if (!shown) throw new Error(`unknown GPU backend ${JSON.stringify(spec.backend)}`);
  if (spec.deviceIds && spec.deviceIds.length === 0) throw new Error('deviceIds must name at least one device; omit it for all devices of the backend');
  // JSON string and array literals are valid Python literals.
  const py = JSON.stringify;
  const ids = spec.deviceIds ? py(spec.deviceIds) : 'None';
  return [
    'import bpy',
    // Python has no raise expression and a one-line snippet cannot hold an if statement; a
    // generator's throw() raises from inside an expression.
    'fail = lambda message: (_ for _ in ()).throw(RuntimeError(message))',
    'p = bpy.context.preferences.addons["cycles"].preferences',
    `t, ids = ${py(type)}, ${ids}`,
    // The enum only lists what this build offers on this OS; assigning anything else raises TypeError.
    `t in {item[0] for item in p.get_device_types(bpy.context)} or fail(${py(`${shown} not available on this node: this Blender has no ${shown} support`)})`,
    'p.compute_device_type = t',
    'found = [d.id for d in p.get_devices_for_type(t) if d.type == t]',
    `found or fail(${py(`${shown} not available on this node: Cycles finds no ${shown} device (no supported GPU, or its driver is missing)`)})`,
    'missing = [i for i in ids or [] if i not in found]',
    `missing == [] or fail(${py(`${shown} device not found on this node: `)} + ", ".join(missing) + "; it has " + ", ".join(found))`,
    '[setattr(d, "use", d.type == t and (ids is None or d.id in ids)) for d in p.devices]',
    '[setattr(s.cycles, "device", "GPU") for s in bpy.data.scenes]',
  ].join('; ');
}

/**
 * A one-line snippet for `--python-expr` that makes every scene render on the CPU, whatever
 * the file says, for jobs that require `cpu` (or a node that must keep its GPU free).
 */
export const cpuOnlyExpr = [
  'import bpy',
  'bpy.context.preferences.addons["cycles"].preferences.compute_device_type = "NONE"',
  '[setattr(s.cycles, "device", "CPU") for s in bpy.data.scenes]',
].join('; ');
