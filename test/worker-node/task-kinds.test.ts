/**
 * The task runner by kind, against a stand-in master over HTTP (the real MasterClient): a GPU
 * job's device snippet reaches Blender on both paths; tile tasks render their border and upload
 * it as the task's output; a stitch task downloads the tiles and uploads the frame one whole
 * render gives; a video task downloads frames and uploads an H.264 MP4; missing inputs and a
 * failing ffmpeg are reported as failed with their reason. Real Blender and ffmpeg, fake GPUs.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID, createHash } from 'node:crypto';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';
import type { TaskAssignment, UpdateTaskStatusRequest } from '../../protocol/schemas.ts';
import type { BlendCache } from '../../worker-node/blend-cache.ts';
import { HotBlender, HotBlenderError, type HotRenderRequest } from '../../worker-node/blender/hot-blender.ts';
import { splitStillExpr, tileGrid } from '../../worker-node/blender/tile-border.ts';
import type { NodeConfig } from '../../worker-node/config.ts';
import type { CyclesDevice } from '../../worker-node/gpu/detect-devices.ts';
import { enableDevicesExpr } from '../../worker-node/gpu/enable-devices.ts';
import { taskDevice } from '../../worker-node/gpu/task-device.ts';
import { MasterClient } from '../../worker-node/master-client.ts';
import { TaskRunner } from '../../worker-node/task-runner.ts';

const BLENDER = process.env.BLENDER ?? 'blender';
const SCENES = new URL('../scenes/', import.meta.url).pathname;
const quiet = { info: () => {}, warn: () => {}, error: () => {} };
const WORKER = randomUUID();

const CUDA_0: CyclesDevice = { type: 'CUDA', name: 'NVIDIA RTX A4000', id: 'CUDA_NVIDIA RTX A4000_0000:01:00' };
const OPTIX_0: CyclesDevice = { type: 'OPTIX', name: 'NVIDIA RTX A4000', id: 'CUDA_NVIDIA RTX A4000_0000:01:00_OptiX' };

function task(fields: Partial<TaskAssignment> & Pick<TaskAssignment, 'frames'>): TaskAssignment {
  const sha = 'ab'.repeat(32);
  return {
    task_id: randomUUID(),
    lease_id: randomUUID(),
    job_id: randomUUID(),
    job_name: 'kinds',
    start_frame: fields.frames[0]!,
    end_frame: fields.frames.at(-1)!,
    blend_file: `${sha}.blend`,
    blend_sha256: sha,
    blend_size: 1,
    input_kind: 'blend',
    main_blend: null,
    lease_expires_at: new Date(Date.now() + 60_000).toISOString(),
    lease_ms: 60_000,
    attempt: 1,
    kind: 'render',
    device: 'any',
    tile: null,
    ...fields,
  };
}

/** What the stand-in master received. */
interface Received {
  updates: UpdateTaskStatusRequest[];
  outputs: Map<string, { type: string; sha256: string | undefined; bytes: Buffer }>;
  frames: Map<string, Buffer>;
  /** Inputs it serves: task id -> n -> content type and bytes. */
  inputs: Map<string, Map<number, { type: string; bytes: Buffer }>>;
}

async function standInMaster(servers: Server[]): Promise<{ url: string; got: Received }> {
  const got: Received = { updates: [], outputs: new Map(), frames: new Map(), inputs: new Map() };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const json = (status: number, value: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
      const url = req.url!.split('?')[0]!;
      let m: RegExpExecArray | null;
      if (url === '/update_task_status') {
        const update = JSON.parse(body.toString()) as UpdateTaskStatusRequest;
        got.updates.push(update);
        return json(200, { task_id: update.task_id, status: update.status === 'running' ? 'running' : update.status, lease_expires_at: null, abort: false });
      }
      if ((m = /^\/tasks\/([^/]+)\/output$/.exec(url)) && req.method === 'PUT') {
        if (Number(req.headers['content-length']) !== body.length) return json(400, { error: 'content-length does not match' });
        got.outputs.set(m[1]!, { type: String(req.headers['content-type']), sha256: req.headers['x-farm-sha256'] as string | undefined, bytes: body });
        return json(200, {});
      }
      if ((m = /^\/tasks\/([^/]+)\/inputs\/(\d+)$/.exec(url)) && req.method === 'GET') {
        if (req.headers['x-farm-worker-id'] !== WORKER || !req.headers['x-farm-lease-id']) return json(400, { error: 'lease headers missing' });
        const input = got.inputs.get(m[1]!)?.get(Number(m[2]));
        if (!input) return json(404, { error: `input ${m[2]} is not there` });
        return res.writeHead(200, { 'content-type': input.type, 'content-length': input.bytes.length }).end(input.bytes);
      }
      if ((m = /^\/tasks\/([^/]+)\/frames\/(\d+)$/.exec(url)) && req.method === 'PUT') {
        got.frames.set(`${m[1]}/${m[2]}`, body);
        return json(200, { frame: Number(m[2]) });
      }
      if (/^\/tasks\/[^/]+\/log$/.test(url)) return json(200, {});
      return json(404, { error: `no route ${req.method} ${url}` });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, got };
}

function runnerFor(opts: { master: string; workDir: string; blend: string; blender?: string; hot?: HotBlender; gpus?: CyclesDevice[] }) {
  const config = { workDir: opts.workDir, threads: 1, blender: opts.blender ?? BLENDER, hot: Boolean(opts.hot) } as NodeConfig;
  const client = new MasterClient({ baseUrl: opts.master, credential: 'farm_node_test' });
  const cache = { ensure: async () => opts.blend } as unknown as BlendCache;
  return { runner: new TaskRunner({ config, client, cache, workerId: WORKER, log: quiet, hot: opts.hot, gpus: opts.gpus }), client };
}

const lastUpdate = (got: Received, t: TaskAssignment) => got.updates.filter((u) => u.task_id === t.task_id).at(-1);
const stop = new AbortController().signal;

describe('taskDevice', () => {
  it('picks the backend the job asks for among the slot GPUs and turns on only those of it; the CPU needs no snippet', () => {
    expect(taskDevice('cpu', [CUDA_0, OPTIX_0])).toEqual({ backend: 'cpu', pythonExprs: [], key: 'cpu' });
    expect(taskDevice('any', [])).toEqual({ backend: 'cpu', pythonExprs: [], key: 'cpu' });
    expect(taskDevice('gpu', [])).toBeNull();
    expect(taskDevice('cuda', [CUDA_0, OPTIX_0])).toMatchObject({
      backend: 'cuda',
      pythonExprs: [enableDevicesExpr({ backend: 'cuda', deviceIds: [CUDA_0.id] })],
    });
    // OptiX is the better backend of an NVIDIA card.
    expect(taskDevice('any', [CUDA_0, OPTIX_0])).toMatchObject({
      backend: 'optix',
      pythonExprs: [enableDevicesExpr({ backend: 'optix', deviceIds: [OPTIX_0.id] })],
    });
  });
});

describe('GPU jobs reach Blender with the slot device snippet', () => {
  const servers: Server[] = [];
  const dir = tempDir('task-gpu');
  // A Blender that records its arguments, one per line (JSON-encoded), and fails at once.
  const argsFile = join(dir, 'args.jsonl');
  const fakeBlender = join(dir, 'blender');
  writeFileSync(
    fakeBlender,
    `#!/usr/bin/env node\nrequire('fs').appendFileSync(${JSON.stringify(argsFile)}, JSON.stringify(process.argv.slice(2)) + '\\n'); process.exit(1);\n`,
  );
  chmodSync(fakeBlender, 0o755);
  const recorded = () =>
    readFileSync(argsFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as string[]);
  afterAll(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
    rmSync(dir, { recursive: true, force: true });
  });

  it('cold: the CUDA snippet for this slot card is a --python-expr after the file; a CPU job gets none', async () => {
    rmSync(argsFile, { force: true });
    const { url } = await standInMaster(servers);
    const { runner, client } = runnerFor({ master: url, workDir: join(dir, 'cold'), blend: join(dir, 'x.blend'), blender: fakeBlender, gpus: [CUDA_0] });
    expect(await runner.run(task({ frames: [1], device: 'gpu' }), stop)).toBe('failed');
    expect(await runner.run(task({ frames: [1], device: 'cpu' }), stop)).toBe('failed');
    await client.close();
    const [gpuArgs, cpuArgs] = recorded();
    const expr = enableDevicesExpr({ backend: 'cuda', deviceIds: [CUDA_0.id] });
    expect(gpuArgs![gpuArgs!.indexOf(expr) - 1]).toBe('--python-expr');
    expect(gpuArgs!.indexOf(expr)).toBeGreaterThan(gpuArgs!.indexOf(join(dir, 'x.blend')));
    expect(cpuArgs!.some((a) => a.includes('compute_device_type'))).toBe(false);
  });

  it('hot: the snippet is a start-up --python-expr before the driver, and the process key names the device setting', async () => {
    rmSync(argsFile, { force: true });
    const { url } = await standInMaster(servers);
    const hot = new HotBlender({ blender: fakeBlender, maxFrames: 0, maxMemMb: 0, idleMs: 0, preview: null });
    const { runner, client } = runnerFor({ master: url, workDir: join(dir, 'hot'), blend: join(dir, 'x.blend'), hot, gpus: [CUDA_0] });
    expect(await runner.run(task({ frames: [1], device: 'cuda' }), stop)).toBe('failed');
    const [args] = recorded();
    const expr = enableDevicesExpr({ backend: 'cuda', deviceIds: [CUDA_0.id] });
    expect(args![args!.indexOf(expr) - 1]).toBe('--python-expr');
    expect(args!.indexOf(expr)).toBeLessThan(args!.indexOf('--python'));

    // The same job on the CPU must not reuse a Blender set up for the GPU.
    const requests: HotRenderRequest[] = [];
    const capturing = {
      renderFrames: async (req: HotRenderRequest) => (requests.push(req), Promise.reject(new HotBlenderError('exited', 'fake'))),
    } as unknown as HotBlender;
    const { runner: second } = runnerFor({ master: url, workDir: join(dir, 'hot2'), blend: join(dir, 'x.blend'), hot: capturing, gpus: [CUDA_0] });
    const jobId = randomUUID();
    await second.run(task({ frames: [1], job_id: jobId, device: 'gpu' }), stop);
    await second.run(task({ frames: [2], job_id: jobId, device: 'cpu' }), stop);
    expect(requests.map((r) => r.startupExprs)).toEqual([[expr], []]);
    expect(requests[0]!.key).not.toBe(requests[1]!.key);
    await client.close();
    await hot.dispose();
  });

  it('a GPU job on a CPU-only slot fails with no_matching_device and starts no Blender', async () => {
    rmSync(argsFile, { force: true });
    const { url, got } = await standInMaster(servers);
    const { runner, client } = runnerFor({ master: url, workDir: join(dir, 'cpu'), blend: join(dir, 'x.blend'), blender: fakeBlender });
    const t = task({ frames: [1], device: 'gpu' });
    expect(await runner.run(t, stop)).toBe('failed');
    expect(lastUpdate(got, t)).toMatchObject({ status: 'failed', failure_reason: 'no_matching_device' });
    expect(lastUpdate(got, t)!.message).toContain('asks for device "gpu"');
    expect(() => readFileSync(argsFile)).toThrow();
    await client.close();
  });
});

describe('tile, stitch and video tasks', () => {
  const servers: Server[] = [];
  const dir = tempDir('task-kinds');
  const still = join(dir, 'still.blend');
  const WIDTH = 40;
  const HEIGHT = 30;

  beforeAll(() => {
    const made = spawnSync(
      BLENDER,
      [
        '-b',
        '--factory-startup',
        '--python',
        join(SCENES, 'make_still_scene.py'),
        '--',
        still,
        '--width',
        String(WIDTH),
        '--height',
        String(HEIGHT),
        '--samples',
        '4',
        '--fps',
        '25',
      ],
      { encoding: 'utf8' },
    );
    if (made.status !== 0) throw new Error(`make_still_scene.py failed:\n${made.stdout}${made.stderr}`);
    // The whole frame as a person would render it, with the two settings tiles need.
    const whole = spawnSync(
      BLENDER,
      ['-b', '--factory-startup', '--disable-autoexec', '-noaudio', still, '--python-expr', splitStillExpr, '-o', join(dir, 'whole_#'), '-f', '1'],
      { encoding: 'utf8' },
    );
    if (whole.status !== 0) throw new Error(`whole render failed:\n${whole.stdout}${whole.stderr}`);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
    rmSync(dir, { recursive: true, force: true });
  });

  const pixels = (bytes: Buffer) => {
    const png = PNG.sync.read(bytes);
    return { width: png.width, height: png.height, hash: createHash('sha256').update(png.data).digest('hex') };
  };

  it('4 tile tasks upload their PNG tiles as task output (not frames); a stitch task turns them into the whole render, pixel for pixel', async () => {
    const { url, got } = await standInMaster(servers);
    const hot = new HotBlender({ blender: BLENDER, maxFrames: 0, maxMemMb: 0, idleMs: 0, preview: null });
    const { runner, client } = runnerFor({ master: url, workDir: join(dir, 'tiles'), blend: still, hot });
    const jobId = randomUUID();
    const tiles = [0, 1, 2, 3].map((index) => task({ frames: [1], job_id: jobId, kind: 'tile', tile: { index, count: 4 } }));
    for (const t of tiles) expect(await runner.run(t, stop), JSON.stringify(lastUpdate(got, t))).toBe('completed');
    // The hot Blender takes no per-task snippets: tiles never go to it.
    expect(hot.startedCount).toBe(0);
    expect(got.frames.size).toBe(0);
    const grid = tileGrid(WIDTH, HEIGHT, 4);
    tiles.forEach((t, i) => {
      const output = got.outputs.get(t.task_id)!;
      expect(output.type).toBe('image/png');
      expect(output.sha256).toBe(createHash('sha256').update(output.bytes).digest('hex'));
      expect(pixels(output.bytes)).toMatchObject({ width: grid[i]!.rect.width, height: grid[i]!.rect.height });
    });

    const stitch = task({ frames: [1], job_id: jobId, kind: 'stitch', tile: { index: 0, count: 4 } });
    got.inputs.set(stitch.task_id, new Map(tiles.map((t, i) => [i, { type: 'image/png', bytes: got.outputs.get(t.task_id)!.bytes }])));
    expect(await runner.run(stitch, stop)).toBe('completed');
    expect(lastUpdate(got, stitch)).toMatchObject({ status: 'completed' });
    const frame = got.frames.get(`${stitch.task_id}/1`)!;
    expect(pixels(frame)).toEqual(pixels(readFileSync(join(dir, 'whole_1.png'))));
    await client.close();
    await hot.dispose();
  }, 120_000);

  it('a stitch task with a tile the master does not have fails as input_missing', async () => {
    const { url, got } = await standInMaster(servers);
    const { runner, client } = runnerFor({ master: url, workDir: join(dir, 'missing'), blend: still });
    const stitch = task({ frames: [1], kind: 'stitch', tile: { index: 0, count: 2 } });
    const tilePng = readFileSync(join(dir, 'whole_1.png'));
    got.inputs.set(stitch.task_id, new Map([[0, { type: 'image/png', bytes: tilePng }]]));
    expect(await runner.run(stitch, stop)).toBe('failed');
    expect(lastUpdate(got, stitch)).toMatchObject({ status: 'failed', failure_reason: 'input_missing' });
    expect(lastUpdate(got, stitch)!.message).toMatch(/tile 1 of frame 1 is not on the master/);
    await client.close();
  }, 60_000);

  /** A small PNG frame whose colour depends on `n`. */
  const framePng = (n: number) => {
    const png = new PNG({ width: 32, height: 18 });
    png.data.fill(0);
    for (let i = 0; i < png.data.length; i += 4) [png.data[i], png.data[i + 1], png.data[i + 2], png.data[i + 3]] = [n * 40, 255 - n * 40, 128, 255];
    return PNG.sync.write(png);
  };

  it('a video task downloads the frames and uploads an H.264 MP4 of all of them at the scene rate', async () => {
    const { url, got } = await standInMaster(servers);
    const { runner, client } = runnerFor({ master: url, workDir: join(dir, 'video'), blend: still });
    const video = task({ frames: [1, 2, 3, 4, 5, 6], kind: 'video' });
    got.inputs.set(video.task_id, new Map([1, 2, 3, 4, 5, 6].map((n) => [n, { type: 'image/png', bytes: framePng(n) }])));
    expect(await runner.run(video, stop)).toBe('completed');
    const output = got.outputs.get(video.task_id)!;
    expect(output.type).toBe('video/mp4');
    const mp4 = join(dir, 'preview.mp4');
    writeFileSync(mp4, output.bytes);
    const probe = spawnSync(
      'ffprobe',
      ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=codec_name,nb_read_frames,r_frame_rate', '-of', 'json', mp4],
      { encoding: 'utf8' },
    );
    expect(JSON.parse(probe.stdout).streams[0]).toMatchObject({ codec_name: 'h264', nb_read_frames: '6', r_frame_rate: '25/1' });
    expect(lastUpdate(got, video)).toMatchObject({ status: 'completed' });
    await client.close();
  }, 60_000);

  it('a video task whose frames ffmpeg cannot read fails as video_failed; a missing frame as input_missing', async () => {
    const { url, got } = await standInMaster(servers);
    const { runner, client } = runnerFor({ master: url, workDir: join(dir, 'bad-video'), blend: still });
    const broken = task({ frames: [1, 2, 3], kind: 'video' });
    got.inputs.set(broken.task_id, new Map([1, 2, 3].map((n) => [n, { type: 'image/png', bytes: n === 2 ? Buffer.from('not a png at all') : framePng(n) }])));
    expect(await runner.run(broken, stop)).toBe('failed');
    expect(lastUpdate(got, broken)).toMatchObject({ status: 'failed', failure_reason: 'video_failed' });
    expect(lastUpdate(got, broken)!.message).toContain('making the preview video');

    const gap = task({ frames: [1, 2], kind: 'video' });
    got.inputs.set(gap.task_id, new Map([[1, { type: 'image/png', bytes: framePng(1) }]]));
    expect(await runner.run(gap, stop)).toBe('failed');
    expect(lastUpdate(got, gap)).toMatchObject({ status: 'failed', failure_reason: 'input_missing' });
    await client.close();
  }, 60_000);
});
