/**
 * Hot Blender against real Blender: frames rendered one after another in one long-lived process
 * must equal what a fresh Blender renders, and the process must be replaced when it dies, when it
 * reaches its limits and when the work changes; the previews it writes beside the frames must not
 * change them, and a preview that fails must not fail a frame. Needs Blender 3.x as $BLENDER or on
 * PATH.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';
import { classifyBlenderFailure } from '../../worker-node/blender/classify-failure.ts';
import { HotBlender, HotBlenderError, type HotBlenderOptions, type HotRenderRequest } from '../../worker-node/blender/hot-blender.ts';
import { driverPreviewSettings, SMALL_FRAME_MAX_WIDTH_PX } from '../../worker-node/frame-preview.ts';
import type { Logger } from '../../worker-node/logger.ts';
import { decodePng } from '../e2e/png.ts';
import { writeTruncatedBlend } from '../scenes/corrupt-blend.ts';

const execFileAsync = promisify(execFile);
const BLENDER = process.env.BLENDER ?? 'blender';
const SCENES = new URL('../scenes/', import.meta.url).pathname;

function makeScene(args: string[]): void {
  const result = spawnSync(BLENDER, ['-b', '--factory-startup', '--python', join(SCENES, 'make_anim_scene.py'), '--', ...args], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`make_anim_scene.py failed (${result.status ?? result.signal}):\n${result.stdout}${result.stderr}`);
}

/** Pixel hash of frame N rendered by `blender -b FILE -o OUT -t 1 <action>` in a fresh process. */
async function freshRender(blend: string, outDir: string, action: string[]): Promise<void> {
  await execFileAsync(BLENDER, [
    '-b',
    '--factory-startup',
    '--disable-autoexec',
    '-noaudio',
    blend,
    '-o',
    join(outDir, 'f_######'),
    '-x',
    '1',
    '-t',
    '1',
    ...action,
  ]);
}

const pixels = (path: string) => decodePng(readFileSync(path)).pixelHash;
const numbered = (dir: string, frame: number) => join(dir, `f_${String(frame).padStart(6, '0')}.png`);

/** Width and height from a JPEG's start-of-frame marker. */
function jpegSize(path: string): { width: number; height: number } {
  const bytes = readFileSync(path);
  expect([bytes[0], bytes[1]]).toEqual([0xff, 0xd8]);
  for (let i = 2; i < bytes.length; i += 2 + bytes.readUInt16BE(i + 2)) {
    const marker = bytes[i + 1]!;
    if (marker >= 0xc0 && marker <= 0xc3) return { height: bytes.readUInt16BE(i + 5), width: bytes.readUInt16BE(i + 7) };
  }
  throw new Error(`no start-of-frame marker in ${path}`);
}

/** One frame: renderFrames with a list of one. */
async function renderOne(h: HotBlender, { frame, ...req }: Omit<HotRenderRequest, 'frames'> & { frame: number }) {
  return (await h.renderFrames({ ...req, frames: [frame] }))[0]!;
}

describe('hot Blender', () => {
  const dir = tempDir('hot-blender');
  const baked = join(dir, 'baked.blend');
  const live = join(dir, 'live.blend');
  // Big enough that a frame takes a while to render, so a kill lands in the middle of one.
  const slow = join(dir, 'slow.blend');
  let hot: HotBlender | undefined;
  const open = (options: Partial<HotBlenderOptions> = {}) =>
    (hot = new HotBlender({
      blender: BLENDER,
      threads: 1,
      maxFrames: 0,
      maxMemMb: 0,
      idleMs: 0,
      preview: driverPreviewSettings({ FARM_PREVIEWS: 'on' }),
      ...options,
    }));

  beforeAll(() => {
    makeScene([baked, '--frames', '12']);
    // Unbaked, with the Euler integrator: where a frame's particles are depends on every step before it.
    makeScene([live, '--frames', '12', '--no-bake', '--integrator', 'EULER']);
    makeScene([slow, '--frames', '3', '--width', '320', '--height', '240']);
  }, 60_000);
  afterEach(async () => {
    await hot?.dispose();
    hot = undefined;
  });

  it('a task of frames 3, 4, 5 and a later one of 9, 10, 12 render in one process, each frame pixel-identical to a fresh blender -f N, each with its preview', async () => {
    const h = open();
    const out = join(dir, 'hot-baked');
    const lines: string[] = [];
    const started: number[] = [];
    const saved: number[] = [];
    const results = [
      ...(await h.renderFrames({
        key: 'job-1',
        blendPath: baked,
        frames: [3, 4, 5],
        outputPattern: join(out, 'frame_######'),
        onLine: (l) => lines.push(l),
        onFrameStarted: (f) => started.push(f),
        onFrameSaved: (r) => saved.push(r.frame),
      })),
      // Two runs of consecutive frames in one call.
      ...(await h.renderFrames({ key: 'job-1', blendPath: baked, frames: [9, 10, 12], outputPattern: join(out, 'frame_######') })),
    ];

    // One process: started by the first frame, reused by every other.
    expect(h.startedCount).toBe(1);
    expect(new Set(results.map((r) => r.pid)).size).toBe(1);
    expect(results.map((r) => r.started)).toEqual([true, false, false, false, false, false]);
    // Each frame was reported as it started and as it was saved, in order.
    expect(started).toEqual([3, 4, 5]);
    expect(saved).toEqual([3, 4, 5]);
    // The same file names as blender -o .../frame_###### -x 1.
    expect(results.map((r) => r.path)).toEqual([3, 4, 5, 9, 10, 12].map((f) => join(out, `frame_${String(f).padStart(6, '0')}.png`)));
    expect(lines.some((l) => l.startsWith('Saved: '))).toBe(true);
    expect(results.every((r) => r.rssMb !== null && r.rssMb > 10)).toBe(true);

    const fresh = join(dir, 'fresh-baked');
    for (const frame of [3, 4, 5, 9, 10, 12]) await freshRender(baked, fresh, ['-f', String(frame)]);
    for (const r of results) expect(pixels(r.path), `frame ${r.frame}`).toBe(pixels(numbered(fresh, r.frame)));
    // Animated: every frame differs, so the equality above is not trivially true.
    expect(new Set(results.map((r) => pixels(r.path))).size).toBe(6);
    // The driver wrote each frame's dashboard preview (the scene is narrower than the preview width: kept at its size).
    expect(results.map((r) => r.previewPath)).toEqual(results.map((r) => r.path.replace(/\.png$/, '.preview.jpg')));
    const { width, height } = decodePng(readFileSync(results[0]!.path));
    for (const r of results) expect(jpegSize(r.previewPath!)).toEqual({ width, height });
  });

  it('previews are scaled to the dashboard width; none are written with previews off', async () => {
    const out = join(dir, 'previews');
    const [scaled] = await open({ preview: { width: 48, quality: 80, skip_png_up_to: 0 } }).renderFrames({
      key: 'job-1',
      blendPath: baked,
      frames: [1],
      outputPattern: join(out, 'frame_######'),
    });
    const png = decodePng(readFileSync(scaled!.path));
    expect(jpegSize(scaled!.previewPath!)).toEqual({ width: 48, height: Math.round((png.height * 48) / png.width) });
    expect(scaled!.previewSeconds).toBeGreaterThan(0);
    await hot!.dispose();

    const [none] = await open({ preview: null }).renderFrames({ key: 'job-1', blendPath: baked, frames: [2], outputPattern: join(out, 'frame_######') });
    expect(none!.previewPath).toBeUndefined();
    expect(existsSync(join(out, 'frame_000002.preview.jpg'))).toBe(false);
    await hot!.dispose();

    // By default (FARM_PREVIEWS unset) a PNG frame no wider than SMALL_FRAME_MAX_WIDTH_PX gets
    // none: the dashboard shows it as it is. Just over the limit, it gets one.
    const [small] = await open({ preview: driverPreviewSettings({}) }).renderFrames({
      key: 'job-1',
      blendPath: baked,
      frames: [3],
      outputPattern: join(out, 'frame_######'),
    });
    expect(decodePng(readFileSync(small!.path)).width).toBeLessThanOrEqual(SMALL_FRAME_MAX_WIDTH_PX);
    expect(small!.previewPath).toBeUndefined();
    expect(existsSync(join(out, 'frame_000003.preview.jpg'))).toBe(false);
    await hot!.dispose();
    const width = decodePng(readFileSync(small!.path)).width;
    const [over] = await open({ preview: { ...driverPreviewSettings({})!, skip_png_up_to: width - 1 } }).renderFrames({
      key: 'job-1',
      blendPath: baked,
      frames: [4],
      outputPattern: join(out, 'frame_######'),
    });
    expect(over!.previewPath).toBe(join(out, 'frame_000004.preview.jpg'));
  });

  it('a preview that cannot be written fails neither its frame nor the next: the frame is saved as usual, without a preview path, and one warning is logged', async () => {
    const warnings: string[] = [];
    const log = { info() {}, warn: (m: string) => warnings.push(m), error() {} } as unknown as Logger;
    const h = open({ log });
    const out = join(dir, 'preview-fails');
    // A directory where the preview of frame 4 would go: saving it fails.
    mkdirSync(join(out, 'frame_000004.preview.jpg'), { recursive: true });
    const results = await h.renderFrames({ key: 'job-1', blendPath: baked, frames: [3, 4, 5], outputPattern: join(out, 'frame_######') });

    expect(results.map((r) => r.frame)).toEqual([3, 4, 5]);
    expect(results.map((r) => r.previewPath !== undefined)).toEqual([true, false, true]);
    expect(warnings).toEqual([expect.stringContaining('could not make the preview of frame 4')]);
    const fresh = join(dir, 'fresh-preview-fails');
    for (const r of results) {
      await freshRender(baked, fresh, ['-f', String(r.frame)]);
      expect(pixels(r.path), `frame ${r.frame}`).toBe(pixels(numbered(fresh, r.frame)));
    }
  });

  it('with an unbaked simulation, frames are stepped in order: they equal one sequential blender -a run, not a jump to -f N', async () => {
    const h = open();
    const out = join(dir, 'hot-live');
    const results = [
      ...(await h.renderFrames({ key: 'job-live', blendPath: live, frames: [3, 4], outputPattern: join(out, 'frame_######') })),
      await renderOne(h, { key: 'job-live', blendPath: live, frame: 9, outputPattern: join(out, 'frame_######') }),
    ];
    expect(new Set(results.map((r) => r.pid)).size).toBe(1);
    // Frame 9 came after 4: frames 5 to 8 were simulated (not rendered) on the way.
    expect(results[2]!.stepSeconds).toBeGreaterThan(0);

    const sequential = join(dir, 'sequential-live');
    await freshRender(live, sequential, ['-s', '1', '-e', '9', '-a']);
    for (const r of results) expect(pixels(r.path), `frame ${r.frame}`).toBe(pixels(numbered(sequential, r.frame)));

    // The control: a fresh -f 9 integrates frames 1-9 in one step and lands elsewhere.
    const jumped = join(dir, 'jumped-live');
    await freshRender(live, jumped, ['-f', '9']);
    expect(pixels(numbered(jumped, 9))).not.toBe(pixels(results[2]!.path));
  });

  it('a hot Blender killed while idle is noticed, and the next frame starts a new one', async () => {
    const h = open();
    const out = join(dir, 'killed-idle');
    const first = await renderOne(h, { key: 'job-1', blendPath: baked, frame: 1, outputPattern: join(out, 'frame_######') });
    process.kill(first.pid, 'SIGKILL');
    await waitUntil(() => h.pid === null);

    const second = await renderOne(h, { key: 'job-1', blendPath: baked, frame: 2, outputPattern: join(out, 'frame_######') });

    expect(second.pid).not.toBe(first.pid);
    expect(second.started).toBe(true);
    expect(h.startedCount).toBe(2);
    expect(readFileSync(second.path).subarray(1, 4).toString()).toBe('PNG');
  });

  it('a hot Blender killed mid-frame fails that frame with the signal, classified as killed, and the next frame restarts it', async () => {
    const h = open();
    const out = join(dir, 'killed-busy');
    const warm = await renderOne(h, { key: 'job-1', blendPath: slow, frame: 1, outputPattern: join(out, 'frame_######') });
    let killed = false;
    const failing = renderOne(h, {
      key: 'job-1',
      blendPath: slow,
      frame: 2,
      outputPattern: join(out, 'frame_######'),
      // Kill it once Blender reports its first samples of the frame: it is rendering right now.
      onLine: (line) => {
        if (!killed && line.startsWith('Fra:2 ') && line.includes('Sample ')) {
          killed = true;
          process.kill(warm.pid, 'SIGKILL');
        }
      },
    });

    const err = await failing.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HotBlenderError);
    expect(err).toMatchObject({ kind: 'exited', signal: 'SIGKILL', exitCode: null });
    expect(classifyBlenderFailure(err as HotBlenderError).reason).toBe('killed');

    const next = await renderOne(h, { key: 'job-1', blendPath: slow, frame: 2, outputPattern: join(out, 'frame_######') });
    expect(next.pid).not.toBe(warm.pid);
    expect(next.started).toBe(true);
  });

  it('--hot-max-frames: after that many frames the next frame gets a new process, even within one task', async () => {
    const h = open({ maxFrames: 2 });
    const out = join(dir, 'max-frames');
    const results = await h.renderFrames({ key: 'job-1', blendPath: baked, frames: [1, 2, 3, 4, 5], outputPattern: join(out, 'frame_######') });
    expect(results.map((r) => r.frame)).toEqual([1, 2, 3, 4, 5]);
    expect(results.map((r) => r.started)).toEqual([true, false, true, false, true]);
    const pids = results.map((r) => r.pid);
    expect(pids[0]).toBe(pids[1]);
    expect(pids[2]).toBe(pids[3]);
    expect(pids[4]).not.toBe(pids[3]);
    expect(new Set(pids).size).toBe(3);
    expect(h.startedCount).toBe(3);
  });

  it('--hot-max-mem-mb: a process holding more than the limit after a task is replaced before the next', async () => {
    // Blender holds well over 1 MB, so every frame retires its process.
    const h = open({ maxMemMb: 1 });
    const out = join(dir, 'max-mem');
    const a = await renderOne(h, { key: 'job-1', blendPath: baked, frame: 1, outputPattern: join(out, 'frame_######') });
    const b = await renderOne(h, { key: 'job-1', blendPath: baked, frame: 2, outputPattern: join(out, 'frame_######') });
    expect(b.pid).not.toBe(a.pid);
    expect(b.started).toBe(true);
  });

  it('a frame of another job (another key) gets a new process, loading the other file', async () => {
    const h = open();
    const a = await renderOne(h, { key: 'job-1', blendPath: baked, frame: 1, outputPattern: join(dir, 'key-a', 'frame_######') });
    const b = await renderOne(h, { key: 'job-2', blendPath: live, frame: 1, outputPattern: join(dir, 'key-b', 'frame_######') });
    expect(b.pid).not.toBe(a.pid);
    expect(h.startedCount).toBe(2);
    // The first process was asked to quit, not left behind.
    expect(processExists(a.pid)).toBe(false);
  });

  it('a truncated .blend: Blender exits 1 before it is ready, with an error classified as a corrupt file', async () => {
    const h = open();
    const broken = join(dir, 'truncated.blend');
    await writeTruncatedBlend(baked, broken);
    const err = await renderOne(h, { key: 'job-3', blendPath: broken, frame: 1, outputPattern: join(dir, 'never', 'frame_######') }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'exited', exitCode: 1 });
    expect(classifyBlenderFailure(err as HotBlenderError)).toMatchObject({ reason: 'corrupt_file', message: expect.stringContaining('Missing DNA block') });
  });

  it("a render error (no camera) is reported with Blender's message, and the process is not reused", async () => {
    const noCamera = join(dir, 'no-camera.blend');
    const made = spawnSync(
      BLENDER,
      [
        '-b',
        '--factory-startup',
        baked,
        '--python-expr',
        `import bpy; bpy.context.scene.camera = None; [bpy.data.objects.remove(o) for o in list(bpy.data.objects) if o.type == 'CAMERA']; bpy.ops.wm.save_as_mainfile(filepath=${JSON.stringify(noCamera)})`,
      ],
      { encoding: 'utf8' },
    );
    expect(made.status, made.stdout + made.stderr).toBe(0);
    const h = open();
    const err = await renderOne(h, { key: 'job-4', blendPath: noCamera, frame: 1, outputPattern: join(dir, 'no-cam', 'frame_######') }).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ kind: 'render_error' });
    expect(classifyBlenderFailure(err as HotBlenderError).reason).toBe('no_camera');
    expect(h.pid).toBeNull();
  });
});

async function waitUntil(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
