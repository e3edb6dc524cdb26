/**
 * Frame previews and device detection on the node: real ffmpeg and real Blender turn an EXR
 * (which browsers cannot show) and a PNG into small JPEGs; the upload goes to the master with the
 * lease; a failing preview never throws.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';
import { PREVIEW_WIDTH_PX } from '../../protocol/api.ts';
import { cpuDevice, devicesFromReport, mayHaveGpu } from '../../worker-node/devices.ts';
import { choosePreviewTool, FramePreviews, makePreview, pngWidth, SMALL_FRAME_MAX_WIDTH_PX } from '../../worker-node/frame-preview.ts';
import type { Logger } from '../../worker-node/logger.ts';
import type { MasterClient } from '../../worker-node/master-client.ts';

const BLENDER = process.env.BLENDER ?? 'blender';
const dir = tempDir('preview');
const exr = join(dir, 'frame_000001.exr');
const png = join(dir, 'frame_000002.png');

/** Width and height from a JPEG's start-of-frame marker. */
function jpegSize(bytes: Buffer): { width: number; height: number } {
  expect([bytes[0], bytes[1]]).toEqual([0xff, 0xd8]);
  let i = 2;
  while (i < bytes.length) {
    const marker = bytes[i + 1]!;
    const length = bytes.readUInt16BE(i + 2);
    if (marker >= 0xc0 && marker <= 0xc3) return { height: bytes.readUInt16BE(i + 5), width: bytes.readUInt16BE(i + 7) };
    i += 2 + length;
  }
  throw new Error('no start-of-frame marker');
}

const silentLog: Logger = { info() {}, warn() {}, error() {} } as unknown as Logger;

beforeAll(() => {
  // A 640x360 linear float gradient saved as OpenEXR, and the same as PNG, by Blender itself.
  const script = `
import bpy, sys
exr, png = sys.argv[sys.argv.index("--") + 1:]
img = bpy.data.images.new("t", 640, 360, float_buffer=True)
img.pixels = [v for y in range(360) for x in range(640) for v in (x / 640 * 2.0, y / 360, 0.25, 1.0)]
s = bpy.context.scene
s.render.image_settings.file_format = "OPEN_EXR"
img.save_render(exr, scene=s)
s.render.image_settings.file_format = "PNG"
img.save_render(png, scene=s)
`;
  execFileSync(BLENDER, ['-b', '--factory-startup', '-noaudio', '--python-exit-code', '1', '--python-expr', script, '--', exr, png], {
    stdio: 'ignore',
    timeout: 120_000,
  });
  expect(existsSync(exr) && existsSync(png)).toBe(true);
}, 180_000);

describe('makePreview', () => {
  const ffmpeg = choosePreviewTool({ PATH: process.env.PATH }).ffmpeg;

  it('ffmpeg makes a JPEG 320 pixels wide, keeping the aspect ratio, of an EXR and of a PNG', async () => {
    expect(ffmpeg, 'ffmpeg must be installed for this test (.ci/run installs it)').not.toBeNull();
    for (const source of [exr, png]) {
      const out = join(dir, `${source.endsWith('.exr') ? 'exr' : 'png'}-ffmpeg.jpg`);
      expect(await makePreview(source, out, 'ffmpeg', { ffmpeg, blender: BLENDER })).toBe(true);
      expect(jpegSize(readFileSync(out))).toEqual({ width: PREVIEW_WIDTH_PX, height: 180 });
    }
  });

  it('without ffmpeg, Blender makes the JPEG of an EXR; a PNG gets none (the dashboard shows the PNG itself)', async () => {
    const out = join(dir, 'exr-blender.jpg');
    expect(await makePreview(exr, out, 'blender', { ffmpeg: null, blender: BLENDER })).toBe(true);
    expect(jpegSize(readFileSync(out))).toEqual({ width: PREVIEW_WIDTH_PX, height: 180 });
    expect(await makePreview(png, join(dir, 'png-blender.jpg'), 'blender', { ffmpeg: null, blender: BLENDER })).toBe(false);
  }, 120_000);

  it('chooses ffmpeg when it is on PATH, Blender otherwise, nothing with FARM_PREVIEWS=off', () => {
    const bin = join(dir, 'bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'ffmpeg'), '#!/bin/sh\n', { mode: 0o755 });
    expect(choosePreviewTool({ PATH: bin })).toEqual({ tool: 'ffmpeg', ffmpeg: join(bin, 'ffmpeg') });
    expect(choosePreviewTool({ PATH: join(dir, 'nowhere') }).tool).toBe('blender');
    expect(choosePreviewTool({ PATH: bin, FARM_PREVIEWS: 'off' }).tool).toBe('off');
  });
});

describe('FramePreviews.send', () => {
  it('uploads the JPEG with the lease, as image/jpeg, and removes its temporary file', async () => {
    const uploads: { frame: number; contentType: string; bytes: Buffer; leaseId: string; path: string }[] = [];
    const client = {
      async uploadPreview(args: { frame: number; path: string; contentType: string; leaseId: string }) {
        uploads.push({ frame: args.frame, contentType: args.contentType, bytes: readFileSync(args.path), leaseId: args.leaseId, path: args.path });
      },
    } as unknown as MasterClient;
    const previews = new FramePreviews({ client, log: silentLog, blender: BLENDER, workDir: dir, env: { PATH: process.env.PATH } });
    await previews.send({ workerId: 'w', taskId: 't', leaseId: 'lease-1', frame: 1, path: exr });
    expect(uploads).toHaveLength(1);
    expect(uploads[0]).toMatchObject({ frame: 1, contentType: 'image/jpeg', leaseId: 'lease-1' });
    expect(jpegSize(uploads[0]!.bytes).width).toBe(PREVIEW_WIDTH_PX);
    expect(existsSync(uploads[0]!.path)).toBe(false);
  });

  it('a preview the hot Blender already wrote is uploaded as it is (no ffmpeg) and deleted; one that is gone is made again', async () => {
    const uploads: { frame: number; bytes: Buffer }[] = [];
    const client = {
      async uploadPreview(args: { frame: number; path: string }) {
        uploads.push({ frame: args.frame, bytes: readFileSync(args.path) });
      },
    } as unknown as MasterClient;
    // ffmpeg that fails if it is run: the written preview must be used as it is.
    const bin = join(dir, 'failing-ffmpeg');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'ffmpeg'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    const previews = new FramePreviews({ client, log: silentLog, blender: BLENDER, workDir: dir, env: { PATH: bin } });
    const written = join(dir, 'frame_000002.preview.jpg');
    writeFileSync(written, 'driver preview');
    await previews.send({ workerId: 'w', taskId: 't', leaseId: 'l', frame: 2, path: png, previewPath: written });
    expect(uploads).toEqual([{ frame: 2, bytes: Buffer.from('driver preview') }]);
    expect(existsSync(written)).toBe(false);

    const real = new FramePreviews({ client, log: silentLog, blender: BLENDER, workDir: dir, env: { PATH: process.env.PATH } });
    await real.send({ workerId: 'w', taskId: 't', leaseId: 'l', frame: 1, path: exr, previewPath: join(dir, 'gone.preview.jpg') });
    expect(uploads).toHaveLength(2);
    expect(jpegSize(uploads[1]!.bytes).width).toBe(PREVIEW_WIDTH_PX);
  });

  it('a PNG frame no wider than SMALL_FRAME_MAX_WIDTH_PX gets no preview unless FARM_PREVIEWS=on; a wider one does', async () => {
    const uploads: number[] = [];
    const client = {
      async uploadPreview(args: { frame: number }) {
        uploads.push(args.frame);
      },
    } as unknown as MasterClient;
    // 640x360: exactly at the limit.
    expect(await pngWidth(png)).toBe(SMALL_FRAME_MAX_WIDTH_PX);
    expect(await pngWidth(exr)).toBeNull();
    const wide = join(dir, 'frame_000003.png');
    const header = readFileSync(png);
    const widened = Buffer.from(header);
    widened.writeUInt32BE(SMALL_FRAME_MAX_WIDTH_PX + 1, 16); // only the header is read before ffmpeg runs
    writeFileSync(wide, widened);
    expect(await pngWidth(wide)).toBe(SMALL_FRAME_MAX_WIDTH_PX + 1);
    // ffmpeg that records that it ran: a skipped frame must not start it.
    const bin = join(dir, 'recording-ffmpeg');
    mkdirSync(bin, { recursive: true });
    const ran = join(dir, 'ffmpeg-ran');
    writeFileSync(join(bin, 'ffmpeg'), `#!/bin/sh\necho x >> ${ran}\nfor last; do :; done\nprintf jpeg > "$last"\n`, { mode: 0o755 });

    await new FramePreviews({ client, log: silentLog, blender: BLENDER, workDir: dir, env: { PATH: bin } }).send({
      workerId: 'w',
      taskId: 't',
      leaseId: 'l',
      frame: 2,
      path: png,
    });
    expect(uploads).toEqual([]);
    expect(existsSync(ran)).toBe(false);
    await new FramePreviews({ client, log: silentLog, blender: BLENDER, workDir: dir, env: { PATH: bin } }).send({
      workerId: 'w',
      taskId: 't',
      leaseId: 'l',
      frame: 3,
      path: wide,
    });
    await new FramePreviews({ client, log: silentLog, blender: BLENDER, workDir: dir, env: { PATH: bin, FARM_PREVIEWS: 'on' } }).send({
      workerId: 'w',
      taskId: 't',
      leaseId: 'l',
      frame: 2,
      path: png,
    });
    expect(uploads).toEqual([3, 2]);
    expect(readFileSync(ran, 'utf8').trim().split('\n')).toHaveLength(2);
  });

  it('a frame that cannot be read, or an upload the master refuses, is logged and does not throw', async () => {
    const warnings: string[] = [];
    const log = { ...silentLog, warn: (m: string) => warnings.push(m) } as unknown as Logger;
    const client = {
      async uploadPreview() {
        throw new Error('409 lease ended');
      },
    } as unknown as MasterClient;
    const previews = new FramePreviews({ client, log, blender: BLENDER, workDir: dir, env: { PATH: process.env.PATH } });
    await previews.send({ workerId: 'w', taskId: 't', leaseId: 'l', frame: 3, path: join(dir, 'missing.exr') });
    await previews.send({ workerId: 'w', taskId: 't', leaseId: 'l', frame: 1, path: exr });
    expect(warnings).toHaveLength(2);
    expect(warnings[1]).toContain('409 lease ended');
  });
});

describe('devices', () => {
  it('reports the CPU with its thread count', () => {
    expect(cpuDevice()).toMatchObject({ type: 'CPU', name: expect.stringMatching(/\(\d+ threads\)$/) });
  });

  it("turns Blender's Cycles device report into the devices the node registers: the CPU, then each GPU with its memory", () => {
    const devices = devicesFromReport({
      blenderVersion: '4.2.0',
      backends: ['cpu', 'optix'],
      devices: [{ type: 'OPTIX', name: 'NVIDIA GeForce RTX 4090', id: 'OPTIX_x', memoryMb: 24_564 }],
      cpuName: 'AMD Ryzen 9 7950X 16-Core Processor',
      compiledTypes: ['CUDA', 'OPTIX'],
      errors: [],
    });
    expect(devices).toEqual([
      { type: 'CPU', name: expect.stringMatching(/^AMD Ryzen 9 7950X 16-Core Processor \(\d+ threads\)$/) },
      { type: 'OPTIX', name: 'NVIDIA GeForce RTX 4090 (24 GiB)' },
    ]);
  });

  it('asks Blender about GPUs only where a GPU driver is present (Linux) or on other systems', () => {
    const dev = tempDir('dev');
    expect(mayHaveGpu('linux', dev)).toBe(false);
    mkdirSync(join(dev, 'dri'));
    writeFileSync(join(dev, 'dri', 'renderD128'), '');
    expect(mayHaveGpu('linux', dev)).toBe(true);
    expect(mayHaveGpu('darwin', join(dev, 'none'))).toBe(true);
  });
});
