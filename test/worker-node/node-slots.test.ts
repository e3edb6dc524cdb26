/**
 * Render slots as workers: a node with several GPUs registers one worker per GPU, each with its
 * own name, identity and devices; a node with one slot registers as it always did. Every
 * registration carries the node's tags and the task kinds it runs. GPUs are faked (this machine
 * has none); the master is a stand-in HTTP server.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';
import type { RegisterWorkerRequest } from '../../protocol/schemas.ts';
import { BlendCache } from '../../worker-node/blend-cache.ts';
import type { NodeConfig } from '../../worker-node/config.ts';
import type { CyclesDevice, CyclesDeviceReport } from '../../worker-node/gpu/detect-devices.ts';
import { BOOT_ID, CREDENTIAL_FILE } from '../../worker-node/identity.ts';
import type { Logger } from '../../worker-node/logger.ts';
import { planNodeSlots, runNodeSlot } from '../../worker-node/node-slots.ts';

const quiet: Logger = { info: () => {}, warn: () => {}, error: () => {} };

const CUDA_0 = 'CUDA_NVIDIA RTX A4000_0000:01:00';
const CUDA_1 = 'CUDA_NVIDIA RTX A4000_0000:41:00';
const card = (type: 'CUDA' | 'OPTIX', id: string): CyclesDevice => ({ type, name: 'NVIDIA RTX A4000', id, memoryMb: 16376 });

function report(devices: CyclesDevice[]): CyclesDeviceReport {
  return { blenderVersion: '3.4.1', backends: ['cpu'], devices, cpuName: 'Test CPU', compiledTypes: ['CUDA', 'OPTIX'], errors: [] };
}

function nodeConfig(overrides: Partial<NodeConfig> = {}): NodeConfig {
  return {
    masterUrl: 'http://127.0.0.1:9',
    name: 'ws',
    workDir: tempDir('slots'),
    threads: 1,
    blender: 'blender',
    blenderVersion: '3.4.1',
    token: 'enrol-me',
    graceMs: 1000,
    pollWaitMs: 0,
    hot: false,
    hotMaxFrames: 0,
    hotMaxMemMb: 0,
    tags: ['gpu', 'big-mem'],
    gpuSlots: 'per-gpu',
    ...overrides,
  };
}

describe('planNodeSlots', () => {
  it('a node without a GPU is one slot under its own name and work dir, reporting its CPU only', () => {
    const config = nodeConfig();
    for (const found of [null, report([])]) {
      const slots = planNodeSlots(config, found);
      expect(slots).toHaveLength(1);
      expect(slots[0]).toMatchObject({ index: 0, name: 'ws', workDir: config.workDir, gpus: [] });
      expect(slots[0]!.devices.map((d) => d.type)).toEqual(['CPU']);
    }
  });

  it('two CUDA cards: two slots, NAME/gpu0 and NAME/gpu1 in slot-0 and slot-1, each reporting the CPU and its own card', () => {
    const config = nodeConfig();
    const slots = planNodeSlots(config, report([card('CUDA', CUDA_0), card('CUDA', CUDA_1)]));
    expect(slots.map((s) => [s.name, s.workDir])).toEqual([
      ['ws/gpu0', join(config.workDir, 'slot-0')],
      ['ws/gpu1', join(config.workDir, 'slot-1')],
    ]);
    expect(slots.map((s) => s.gpus.map((g) => g.id))).toEqual([[CUDA_0], [CUDA_1]]);
    expect(slots[0]!.devices).toEqual([
      { type: 'CPU', name: expect.stringMatching(/^Test CPU/) },
      { type: 'CUDA', name: 'NVIDIA RTX A4000 (16 GiB)' },
    ]);
  });

  it('a card listed under CUDA and OptiX stays one slot that offers both backends; --gpu-slots single is one slot for all', () => {
    const devices = [card('CUDA', CUDA_0), card('CUDA', CUDA_1), card('OPTIX', `${CUDA_0}_OptiX`), card('OPTIX', `${CUDA_1}_OptiX`)];
    const perGpu = planNodeSlots(nodeConfig(), report(devices));
    expect(perGpu.map((s) => s.gpus.map((g) => g.id))).toEqual([
      [CUDA_0, `${CUDA_0}_OptiX`],
      [CUDA_1, `${CUDA_1}_OptiX`],
    ]);
    expect(perGpu[1]!.devices.map((d) => d.type)).toEqual(['CPU', 'CUDA', 'OPTIX']);

    const config = nodeConfig({ gpuSlots: 'single' });
    const single = planNodeSlots(config, report(devices));
    expect(single).toHaveLength(1);
    expect(single[0]).toMatchObject({ name: 'ws', workDir: config.workDir, label: '2 GPUs (OptiX)' });
    expect(single[0]!.gpus).toHaveLength(4);
  });
});

describe('slots registering with the master', () => {
  const servers: Server[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  });

  /** A master that enrols each name as its own worker and has no work. */
  async function fakeMaster() {
    const registrations: RegisterWorkerRequest[] = [];
    const polls = new Set<string>();
    const ids = new Map<string, string>();
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        if (req.url === '/register_worker') {
          const registration = JSON.parse(body) as RegisterWorkerRequest;
          registrations.push(registration);
          const id = ids.get(registration.name) ?? `0000000${ids.size}-0000-4000-8000-000000000000`;
          ids.set(registration.name, id);
          res.writeHead(201).end(JSON.stringify({ worker_id: id, name: registration.name, lease_ms: 60_000, node_token: `farm_node_${ids.size}` }));
        } else if (req.url === '/get_job') {
          polls.add((JSON.parse(body) as { worker_id: string }).worker_id);
          res.writeHead(204).end();
        } else {
          res.writeHead(404).end(JSON.stringify({ error: 'not here' }));
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    servers.push(server);
    return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, registrations, polls };
  }

  /** Runs every planned slot until each has asked for work once, then stops them. */
  async function runSlots(config: NodeConfig, found: CyclesDeviceReport | null, master: Awaited<ReturnType<typeof fakeMaster>>) {
    const slots = planNodeSlots(config, found);
    const stop = new AbortController();
    const running = Promise.all(
      slots.map((slot) =>
        runNodeSlot(slot, {
          config,
          cache: new BlendCache(config.workDir, undefined),
          taskKinds: ['render', 'tile', 'stitch', 'video'],
          log: quiet,
          stopClaiming: stop.signal,
          stopRender: stop.signal,
        }),
      ),
    );
    const deadline = Date.now() + 10_000;
    while (master.polls.size < slots.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    stop.abort();
    await running;
    return slots;
  }

  it('two faked CUDA cards: two workers with their own names, ids, credentials and one GPU each, both with the tags and task kinds', async () => {
    const master = await fakeMaster();
    const config = nodeConfig({ masterUrl: master.url });
    await runSlots(config, report([card('CUDA', CUDA_0), card('CUDA', CUDA_1)]), master);

    expect(master.registrations.map((r) => r.name).sort()).toEqual(['ws/gpu0', 'ws/gpu1']);
    expect(master.polls.size).toBe(2);
    for (const registration of master.registrations) {
      expect(registration.devices!.filter((d) => d.type !== 'CPU')).toEqual([{ type: 'CUDA', name: 'NVIDIA RTX A4000 (16 GiB)' }]);
      expect(registration).toMatchObject({ tags: ['gpu', 'big-mem'], task_kinds: ['render', 'tile', 'stitch', 'video'] });
    }
    // One process, one life: both slots send its boot id, so a restart hands back both slots' tasks.
    const bootIds = master.registrations.map((r) => r.boot_id);
    expect(bootIds[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(new Set(bootIds)).toEqual(new Set([BOOT_ID]));
    const saved = [0, 1].map((i) => JSON.parse(readFileSync(join(config.workDir, `slot-${i}`, CREDENTIAL_FILE), 'utf8')) as { worker_id: string });
    expect(new Set(saved.map((s) => s.worker_id)).size).toBe(2);
    // The node's own folder holds no identity of its own: only its slots do.
    expect(existsSync(join(config.workDir, CREDENTIAL_FILE))).toBe(false);
  });

  it('a node without a GPU registers once, under its own name and work dir, reporting its CPU', async () => {
    const master = await fakeMaster();
    const config = nodeConfig({ masterUrl: master.url, tags: [] });
    await runSlots(config, null, master);
    expect(master.registrations).toHaveLength(1);
    expect(master.registrations[0]).toMatchObject({ name: 'ws', tags: [], task_kinds: ['render', 'tile', 'stitch', 'video'] });
    expect(master.registrations[0]!.devices!.map((d) => d.type)).toEqual(['CPU']);
    expect(existsSync(join(config.workDir, CREDENTIAL_FILE))).toBe(true);
  });
});
