/**
 * A node's render slots as the master sees them. A machine with several GPUs renders one task
 * per GPU at once (gpu/render-slots.ts): each slot registers as a worker of its own, named
 * `NAME/gpuN`, with its identity (worker id and credential) in `WORK_DIR/slot-N`, its own hot
 * Blender, and only its own GPUs in its device list, so the master gives it work its GPU can
 * do. A machine with one slot (no GPU, one GPU, or `--gpu-slots single`) is one worker under the
 * node's own name and work dir, as before slots existed.
 */
import { join } from 'node:path';
import { FarmApiError } from '../protocol/http-client.ts';
import type { Device, TaskKind } from '../protocol/schemas.ts';
import type { BlendCache } from './blend-cache.ts';
import { HotBlender } from './blender/hot-blender.ts';
import type { NodeConfig } from './config.ts';
import { devicesFromReport, cpuDevice } from './devices.ts';
import { FramePreviews } from './frame-preview.ts';
import { pciAddressOfCyclesId, type CyclesDevice, type CyclesDeviceReport } from './gpu/detect-devices.ts';
import { planRenderSlots } from './gpu/render-slots.ts';
import type { Logger } from './logger.ts';
import { MasterClient } from './master-client.ts';
import { pollLoop } from './poll-loop.ts';
import { TaskRunner } from './task-runner.ts';

/** A hot Blender left without work this long is stopped, so an idle node gives its memory back. */
const HOT_IDLE_MS = 60_000;

export interface NodeSlot {
  index: number;
  /** The worker name it registers as. */
  name: string;
  /** Its identity files, renders and logs (the blend cache stays in the node's work dir). */
  workDir: string;
  /** For the node's log, e.g. "GPU 1: NVIDIA RTX A4000 (OptiX)". */
  label: string;
  /**
   * Its GPUs as Cycles lists them, under every backend that lists the same card (an NVIDIA card
   * is both CUDA and OptiX), so a job asking for either backend can run on it. Empty: CPU only.
   */
  gpus: CyclesDevice[];
  /** What it reports when it registers: the CPU, then its GPUs. */
  devices: Device[];
}

/**
 * The slots of a node with `report`'s GPUs (null: none found). One slot per GPU unless
 * `gpuSlots` is `single`; with one slot, the node's own name and work dir.
 */
export function planNodeSlots(node: Pick<NodeConfig, 'name' | 'workDir' | 'gpuSlots'>, report: CyclesDeviceReport | null): NodeSlot[] {
  if (!report || report.devices.length === 0) {
    return [{ index: 0, name: node.name, workDir: node.workDir, label: 'CPU', gpus: [], devices: [report ? devicesFromReport(report)[0]! : cpuDevice()] }];
  }
  const planned = planRenderSlots(report.devices, { allInOne: node.gpuSlots === 'single' });
  if (planned.length === 1) {
    // One slot renders on every GPU Cycles found, whichever backend a job asks for.
    return [{ index: 0, name: node.name, workDir: node.workDir, label: planned[0]!.label, gpus: report.devices, devices: devicesFromReport(report) }];
  }
  return planned.map((slot) => {
    const gpus = report.devices.filter((d) => slot.deviceIds.some((id) => sameCard(id, d.id)));
    return {
      index: slot.index,
      name: `${node.name}/gpu${slot.index}`,
      workDir: join(node.workDir, `slot-${slot.index}`),
      label: slot.label,
      gpus,
      devices: devicesFromReport({ ...report, devices: gpus }),
    };
  });
}

/** Whether two Cycles ids are one card: the same id, or the same PCI address under two backends. */
function sameCard(a: string, b: string): boolean {
  if (a === b) return true;
  const pci = pciAddressOfCyclesId(a);
  return pci !== undefined && pci === pciAddressOfCyclesId(b);
}

export interface RunSlotDeps {
  config: NodeConfig;
  /** Shared by every slot of the node (see blend-cache.ts). */
  cache: BlendCache;
  /** The kinds of task this node runs, sent when each slot registers. */
  taskKinds: TaskKind[];
  log: Logger;
  /** Ends claiming (the first SIGTERM). */
  stopClaiming: AbortSignal;
  /** Aborts the task in hand (after the grace period, or a second signal). */
  stopRender: AbortSignal;
}

/**
 * Runs one slot until `stopClaiming` aborts and its task is done or released: its own master
 * client (its own credential), hot Blender, previews and poll loop.
 */
export async function runNodeSlot(slot: NodeSlot, deps: RunSlotDeps): Promise<void> {
  const { log, stopClaiming, stopRender } = deps;
  const config: NodeConfig = { ...deps.config, name: slot.name, workDir: slot.workDir };
  const client = new MasterClient({
    baseUrl: config.masterUrl,
    enrolmentToken: config.token,
    onRetry: (what, error, delayMs) =>
      log.warn(`${what}: ${error instanceof FarmApiError ? error.summary : error.message}; retrying in ${Math.round(delayMs)} ms`),
  });
  const hot = config.hot
    ? new HotBlender({
        blender: config.blender,
        threads: config.threads,
        maxFrames: config.hotMaxFrames,
        maxMemMb: config.hotMaxMemMb,
        idleMs: HOT_IDLE_MS,
        log,
      })
    : undefined;
  const previews = new FramePreviews({ client, log, blender: config.blender, workDir: config.workDir });
  const cache = { ensure: (...[file, sha, input]: Parameters<BlendCache['ensure']>) => deps.cache.ensure(file, sha, input, client) } as BlendCache;
  const makeRunner = (workerId: string) => withStopSignal(new TaskRunner({ config, client, cache, workerId, log, hot, previews, gpus: slot.gpus }), stopRender);
  try {
    // The poll loop watches stopClaiming; tasks watch stopRender, so a task may finish in grace.
    await pollLoop({ config, client, log, devices: slot.devices, taskKinds: deps.taskKinds, makeRunner }, stopClaiming);
  } catch (err) {
    if (!stopClaiming.aborted) throw err;
  } finally {
    await hot?.dispose().catch(() => {});
    await client.close().catch(() => {});
  }
}

/** Makes the runner abort on the render signal rather than on the loop's. */
function withStopSignal(runner: TaskRunner, renderStop: AbortSignal): TaskRunner {
  const run = runner.run.bind(runner);
  runner.run = (task, _stop, hooks) => run(task, renderStop, hooks);
  return runner;
}
