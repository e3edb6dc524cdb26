/**
 * GPU nodes: what Blender reports as Cycles devices, the snippets that turn them on, the
 * render slots planned from them and the backend a job renders with. This machine has no GPU, so the real
 * detection must say so, and multi-GPU machines are played by a captured report line and by
 * a Blender whose Cycles device list is faked from Python. Needs Blender 3.x as $BLENDER or
 * `blender` on PATH.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';
import { classifyBlenderFailure } from '../../worker-node/blender/classify-failure.ts';
import { buildRenderArgs } from '../../worker-node/blender/render-args.ts';
import {
  DETECT_DEVICES_SCRIPT,
  detectCyclesDevices,
  parseDetectDevicesOutput,
  parseNvidiaSmiMemory,
  pciAddressOfCyclesId,
  type CyclesDeviceReport,
} from '../../worker-node/gpu/detect-devices.ts';
import { chooseBackend } from '../../worker-node/gpu/device-requirement.ts';
import { cpuOnlyExpr, enableDevicesExpr } from '../../worker-node/gpu/enable-devices.ts';
import { planRenderSlots } from '../../worker-node/gpu/render-slots.ts';
import { runProcess } from '../../worker-node/process/run-process.ts';

const BLENDER = process.env.BLENDER ?? 'blender';
const SCENES = new URL('../scenes/', import.meta.url).pathname;

/**
 * The report line of a workstation with two NVIDIA RTX A4000 cards, in the detection script's
 * format: each card is listed under CUDA and again under OptiX, with OptiX's own ids.
 */
const TWO_GPU_LINE =
  'FARM_CYCLES_DEVICES {"blender": "3.4.1", "compiled": ["CUDA", "OPTIX", "HIP"], "devices": [' +
  '{"type": "CUDA", "name": "NVIDIA RTX A4000", "id": "CUDA_NVIDIA RTX A4000_0000:01:00"}, ' +
  '{"type": "CUDA", "name": "NVIDIA RTX A4000", "id": "CUDA_NVIDIA RTX A4000_0000:41:00"}, ' +
  '{"type": "OPTIX", "name": "NVIDIA RTX A4000", "id": "CUDA_NVIDIA RTX A4000_0000:01:00_OptiX"}, ' +
  '{"type": "OPTIX", "name": "NVIDIA RTX A4000", "id": "CUDA_NVIDIA RTX A4000_0000:41:00_OptiX"}], ' +
  '"cpu": "AMD Ryzen Threadripper 3970X 32-Core Processor", "errors": []}';

/** What `nvidia-smi --query-gpu=pci.bus_id,memory.total --format=csv,noheader,nounits` prints there. */
const TWO_GPU_NVIDIA_SMI = '00000000:01:00.0, 16376\n00000000:41:00.0, 16376\n';

/**
 * Python run before a snippet to make Cycles' Python API list two CUDA cards this machine does
 * not have. Cycles' C++ side still has only the CPU, so a render afterwards falls back to it.
 */
const FAKE_TWO_CUDA_CARDS = [
  'import _cycles',
  'real = _cycles.available_devices',
  'fake = {"CUDA": [("NVIDIA RTX A4000", "CUDA", "CUDA_NVIDIA RTX A4000_0000:01:00", False), ("NVIDIA RTX A4000", "CUDA", "CUDA_NVIDIA RTX A4000_0000:41:00", False)]}',
  '_cycles.available_devices = lambda device_type="": tuple(fake.get(device_type, [])) + tuple(real(device_type))',
].join('; ');

/** Prints the device preferences and every scene's device after the snippets ran. */
const PRINT_DEVICE_STATE =
  'import bpy, json; p = bpy.context.preferences.addons["cycles"].preferences; ' +
  'print("DEVICE_STATE " + json.dumps({"type": p.compute_device_type, "use": {d.id: d.use for d in p.devices}, "scenes": [s.cycles.device for s in bpy.data.scenes]}))';

function deviceState(tail: readonly string[]): unknown {
  const line = tail.find((l) => l.startsWith('DEVICE_STATE '));
  return line ? JSON.parse(line.slice('DEVICE_STATE '.length)) : undefined;
}

describe('Cycles device detection on this machine (no GPU)', () => {
  let report: CyclesDeviceReport;
  beforeAll(async () => {
    report = await detectCyclesDevices(BLENDER);
  }, 60_000);

  it('finds no GPU, only the CPU', () => {
    expect(report.backends).toEqual(['cpu']);
    expect(report.devices).toEqual([]);
    expect(report.cpuName).toMatch(/\S/);
    expect(report.blenderVersion).toMatch(/^\d+\.\d+/);
    expect(report.errors).toEqual([]);
    // Debian builds Cycles with CUDA and HIP; having the backend is not having a device.
    for (const type of report.compiledTypes) expect(['CUDA', 'OPTIX', 'HIP', 'ONEAPI', 'METAL']).toContain(type);
  });

  // Which jobs such a node may claim is the master's claim's (test/edge/node-matching.test.ts).
  it('so a job that needs a GPU finds no backend here, and a CPU or any-device job renders on one CPU slot', () => {
    expect(chooseBackend('gpu', report.backends)).toBeNull();
    expect(chooseBackend('cuda', report.backends)).toBeNull();
    expect(chooseBackend('optix', report.backends)).toBeNull();
    expect(chooseBackend('cpu', report.backends)).toBe('cpu');
    expect(chooseBackend('any', report.backends)).toBe('cpu');
    expect(planRenderSlots(report.devices)).toEqual([{ index: 0, backend: 'cpu', deviceIds: [], label: 'CPU', pythonExpr: cpuOnlyExpr }]);
  });
});

describe('a two-GPU machine, from its captured report line', () => {
  const report = parseDetectDevicesOutput(['Blender 3.4.1 (hash 55485cb379f7 built 2023-02-01)', TWO_GPU_LINE, '', 'Blender quit']);
  const cuda = ['CUDA_NVIDIA RTX A4000_0000:01:00', 'CUDA_NVIDIA RTX A4000_0000:41:00'];
  const optix = cuda.map((id) => `${id}_OptiX`);

  it('lists both cards under CUDA and OptiX and sums the backends up', () => {
    expect(report.backends).toEqual(['cpu', 'cuda', 'optix']);
    expect(report.devices.map((d) => [d.type, d.id])).toEqual([...cuda.map((id) => ['CUDA', id]), ...optix.map((id) => ['OPTIX', id])]);
    expect(report.cpuName).toBe('AMD Ryzen Threadripper 3970X 32-Core Processor');
    expect(report.compiledTypes).toEqual(['CUDA', 'OPTIX', 'HIP']);
  });

  it('plans one slot per card on OptiX, one slot for both with allInOne, and CUDA when asked', () => {
    const slots = planRenderSlots(report.devices);
    expect(slots.map(({ pythonExpr, ...slot }) => slot)).toEqual([
      { index: 0, backend: 'optix', deviceIds: [optix[0]], label: 'GPU 0: NVIDIA RTX A4000 (OptiX)' },
      { index: 1, backend: 'optix', deviceIds: [optix[1]], label: 'GPU 1: NVIDIA RTX A4000 (OptiX)' },
    ]);
    expect(slots[1]!.pythonExpr).toBe(enableDevicesExpr({ backend: 'optix', deviceIds: [optix[1]!] }));
    expect(planRenderSlots(report.devices, { allInOne: true }).map(({ pythonExpr, ...slot }) => slot)).toEqual([
      { index: 0, backend: 'optix', deviceIds: optix, label: '2 GPUs (OptiX)' },
    ]);
    expect(planRenderSlots(report.devices, { backend: 'cuda' }).map((s) => s.deviceIds)).toEqual([[cuda[0]], [cuda[1]]]);
    expect(() => planRenderSlots(report.devices, { backend: 'hip' })).toThrow('no HIP device on this node');
  });

  it('takes GPU jobs, picking the requested backend', () => {
    expect(chooseBackend('gpu', report.backends)).toBe('optix');
    expect(chooseBackend('any', report.backends)).toBe('optix');
    expect(chooseBackend('cuda', report.backends)).toBe('cuda');
    expect(chooseBackend('cpu', report.backends)).toBe('cpu');
    expect(chooseBackend('hip', report.backends)).toBeNull();
  });

  it('matches nvidia-smi memory to Cycles ids by PCI address', () => {
    expect(pciAddressOfCyclesId(optix[1]!)).toBe('0000:41:00');
    expect(pciAddressOfCyclesId('METAL_Apple M2 Max')).toBeUndefined();
    expect(parseNvidiaSmiMemory(TWO_GPU_NVIDIA_SMI)).toEqual(
      new Map([
        ['0000:01:00', 16376],
        ['0000:41:00', 16376],
      ]),
    );
  });

  it('detectCyclesDevices adds that memory, run against stand-in blender and nvidia-smi commands', async () => {
    const dir = tempDir('gpu-detect');
    try {
      const fakeBlender = join(dir, 'blender');
      const fakeSmi = join(dir, 'nvidia-smi');
      writeFileSync(fakeBlender, `#!/bin/sh\necho 'Blender 3.4.1'\necho '${TWO_GPU_LINE}'\n`);
      writeFileSync(fakeSmi, `#!/bin/sh\nprintf '${TWO_GPU_NVIDIA_SMI.replaceAll('\n', '\\n')}'\n`);
      chmodSync(fakeBlender, 0o755);
      chmodSync(fakeSmi, 0o755);
      const detected = await detectCyclesDevices(fakeBlender, { nvidiaSmi: fakeSmi });
      expect(detected.devices.map((d) => d.memoryMb)).toEqual([16376, 16376, 16376, 16376]);
      // No nvidia-smi: the devices are still reported, without memory.
      const withoutSmi = await detectCyclesDevices(fakeBlender, { nvidiaSmi: join(dir, 'missing') });
      expect(withoutSmi.devices.map((d) => d.memoryMb)).toEqual([undefined, undefined, undefined, undefined]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a report line that is missing or mangled is an error, not "no GPU"', () => {
    expect(() => parseDetectDevicesOutput(['Blender 3.4.1', 'Blender quit'])).toThrow(/no line starting with "FARM_CYCLES_DEVICES"/);
    expect(() => parseDetectDevicesOutput(['FARM_CYCLES_DEVICES {"blender": "3.4.1"}'])).toThrow(/not what the script prints/);
  });
});

describe('device snippets in real Blender', () => {
  const dir = tempDir('gpu-exprs');
  const blend = join(dir, 'tiny.blend');
  beforeAll(() => {
    const made = spawnSync(
      BLENDER,
      ['-b', '--factory-startup', '--python', join(SCENES, 'make_still_scene.py'), '--', blend, '--width', '16', '--height', '12', '--samples', '1'],
      { encoding: 'utf8' },
    );
    if (made.status !== 0) throw new Error(`make_still_scene.py failed:\n${made.stdout}${made.stderr}`);
  }, 60_000);

  const render = (name: string, pythonExprs: string[]) =>
    runProcess(BLENDER, buildRenderArgs({ blendPath: blend, outputPattern: join(dir, `${name}_#`), frames: [1], pythonExprs }), { tailLines: 400 });

  it('the detection script lists GPUs that Cycles reports (two faked CUDA cards)', async () => {
    const result = await runProcess(BLENDER, [
      '-b',
      '--factory-startup',
      '--python-exit-code',
      '1',
      '--python-expr',
      FAKE_TWO_CUDA_CARDS,
      '--python-expr',
      DETECT_DEVICES_SCRIPT,
    ]);
    expect(result.exitCode, result.tail.join('\n')).toBe(0);
    const report = parseDetectDevicesOutput(result.tail);
    expect(report.backends).toEqual(['cpu', 'cuda']);
    expect(report.devices).toEqual([
      { type: 'CUDA', name: 'NVIDIA RTX A4000', id: 'CUDA_NVIDIA RTX A4000_0000:01:00' },
      { type: 'CUDA', name: 'NVIDIA RTX A4000', id: 'CUDA_NVIDIA RTX A4000_0000:41:00' },
    ]);
  });

  it('enabling CUDA on this node fails the render with "CUDA not available on this node"; OptiX, not even built in, likewise', async () => {
    const [cuda, optix] = await Promise.all([
      render('cuda', [enableDevicesExpr({ backend: 'cuda' })]),
      render('optix', [enableDevicesExpr({ backend: 'optix' })]),
    ]);
    expect(cuda.exitCode).toBe(1);
    expect(classifyBlenderFailure(cuda).message).toContain('RuntimeError: CUDA not available on this node: Cycles finds no CUDA device');
    expect(optix.exitCode).toBe(1);
    expect(classifyBlenderFailure(optix).message).toContain('RuntimeError: OptiX not available on this node: this Blender has no OptiX support');
  });

  it('with two cards listed, the snippet turns on only the chosen one, puts every scene on the GPU, and the render runs', async () => {
    const chosen = 'CUDA_NVIDIA RTX A4000_0000:41:00';
    const [one, unknown] = await Promise.all([
      render('one-gpu', [FAKE_TWO_CUDA_CARDS, enableDevicesExpr({ backend: 'cuda', deviceIds: [chosen] }), PRINT_DEVICE_STATE]),
      render('unknown-gpu', [FAKE_TWO_CUDA_CARDS, enableDevicesExpr({ backend: 'cuda', deviceIds: ['CUDA_Other_0000:09:00'] })]),
    ]);
    expect(one.exitCode, one.tail.join('\n')).toBe(0);
    expect(deviceState(one.tail)).toEqual({
      type: 'CUDA',
      use: { 'CUDA_NVIDIA RTX A4000_0000:01:00': false, [chosen]: true, CPU: false },
      scenes: ['GPU'],
    });
    expect(unknown.exitCode).toBe(1);
    expect(classifyBlenderFailure(unknown).message).toContain(
      'CUDA device not found on this node: CUDA_Other_0000:09:00; it has CUDA_NVIDIA RTX A4000_0000:01:00, CUDA_NVIDIA RTX A4000_0000:41:00',
    );
  });

  it('cpuOnlyExpr renders a scene saved for the GPU on the CPU', async () => {
    const savedForGpu = 'import bpy; bpy.context.scene.cycles.device = "GPU"';
    const result = await render('cpu-only', [savedForGpu, cpuOnlyExpr, PRINT_DEVICE_STATE]);
    expect(result.exitCode, result.tail.join('\n')).toBe(0);
    expect(deviceState(result.tail)).toMatchObject({ type: 'NONE', scenes: ['CPU'] });
  });
});
