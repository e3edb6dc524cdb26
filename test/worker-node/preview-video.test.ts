/**
 * The preview video: frames in, an H.264 MP4 out with one video frame per rendered frame at
 * the scene's rate, checked with Debian's ffmpeg and ffprobe; and the scene's rate read from
 * a real .blend. Needs ffmpeg with libx264, ffprobe, and Blender 3.x ($BLENDER or `blender`).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';
import { ffmpegCommand } from '../../worker-node/config.ts';
import { assemblePreviewVideo, hasFfmpeg, type PreviewFrame } from '../../worker-node/post/preview-video.ts';
import { frameRateOf, readSceneFps, sceneFpsProbe } from '../../worker-node/post/scene-fps.ts';

const BLENDER = process.env.BLENDER ?? 'blender';
const SCENES = new URL('../scenes/', import.meta.url).pathname;

/** Seven colours far apart in YUV too, so lossy H.264 cannot blur one into another. */
const COLOURS: [number, number, number][] = [
  [255, 0, 0],
  [0, 255, 0],
  [0, 0, 255],
  [255, 255, 0],
  [0, 255, 255],
  [255, 0, 255],
  [255, 255, 255],
];
/** Blender frame numbers with gaps: the video must still have one frame for each. */
const FRAME_NUMBERS = [1, 2, 3, 5, 8, 9, 10];

function writeFlatPng(path: string, width: number, height: number, [r, g, b]: [number, number, number]): void {
  const png = new PNG({ width, height });
  for (let i = 0; i < width * height; i++) png.data.set([r, g, b, 255], i * 4);
  writeFileSync(path, PNG.sync.write(png));
}

function ffprobe(path: string) {
  const result = spawnSync(
    'ffprobe',
    [
      '-v',
      'error',
      '-count_frames',
      '-select_streams',
      'v:0',
      '-show_entries',
      'stream=nb_read_frames,codec_name,r_frame_rate,width,height,pix_fmt',
      '-show_entries',
      'format=format_name',
      '-of',
      'json',
      path,
    ],
    { encoding: 'utf8' },
  );
  if (result.status !== 0) throw new Error(`ffprobe failed: ${result.stderr}`);
  const json = JSON.parse(result.stdout) as { streams: Record<string, string | number>[]; format: { format_name: string } };
  return { ...json.streams[0]!, format_name: json.format.format_name };
}

/** The mean RGB of every decoded video frame, in order. */
function decodedFrameColours(path: string, width: number, height: number): [number, number, number][] {
  const result = spawnSync('ffmpeg', ['-v', 'error', '-i', path, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 64 << 20 });
  if (result.status !== 0) throw new Error(`ffmpeg decode failed: ${result.stderr}`);
  const frameBytes = width * height * 3;
  const colours: [number, number, number][] = [];
  for (let offset = 0; offset + frameBytes <= result.stdout.length; offset += frameBytes) {
    const sum = [0, 0, 0];
    for (let i = 0; i < frameBytes; i++) sum[i % 3]! += result.stdout[offset + i]!;
    colours.push(sum.map((s) => Math.round(s / (width * height))) as [number, number, number]);
  }
  return colours;
}

describe('preview video', () => {
  const dir = tempDir('preview-video');

  function makeFrames(width: number, height: number, tag: string): PreviewFrame[] {
    return FRAME_NUMBERS.map((frame, i) => {
      const path = join(dir, `${tag}_${String(frame).padStart(6, '0')}.png`);
      writeFlatPng(path, width, height, COLOURS[i]!);
      return { frame, path };
    });
  }

  it('this machine has ffmpeg with libx264; a missing ffmpeg is reported as absent, not thrown', async () => {
    expect(await hasFfmpeg()).toBe(true);
    expect(await hasFfmpeg(join(dir, 'no-such-ffmpeg'))).toBe(false);
  });

  it('FFMPEG names the ffmpeg a node checks and runs for videos, as it does for frame previews', async () => {
    const saved = process.env.FFMPEG;
    try {
      process.env.FFMPEG = join(dir, 'no-such-ffmpeg');
      expect(ffmpegCommand()).toBe(join(dir, 'no-such-ffmpeg'));
      expect(await hasFfmpeg()).toBe(false);
      await expect(assemblePreviewVideo({ frames: makeFrames(16, 16, 'env'), fps: 24, outPath: join(dir, 'env.mp4') })).rejects.toThrow();
    } finally {
      if (saved === undefined) delete process.env.FFMPEG;
      else process.env.FFMPEG = saved;
    }
    expect(await hasFfmpeg()).toBe(true);
  });

  it('7 frames numbered with gaps become a 24 fps H.264 MP4 of exactly 7 frames, in frame order', async () => {
    // Handed over shuffled: the video follows frame numbers, not list order.
    const frames = makeFrames(64, 48, 'a').reverse();
    const out = join(dir, 'preview.mp4');
    const video = await assemblePreviewVideo({ frames, fps: { fps: 24, fpsBase: 1 }, outPath: out });
    expect(video).toMatchObject({ path: out, frameCount: 7, frameRate: { num: 24, den: 1, text: '24/1' } });

    expect(ffprobe(out)).toMatchObject({ codec_name: 'h264', nb_read_frames: '7', r_frame_rate: '24/1', width: 64, height: 48, pix_fmt: 'yuv420p' });
    const colours = decodedFrameColours(out, 64, 48);
    expect(colours).toHaveLength(7);
    for (const [i, colour] of colours.entries()) {
      for (const [c, channel] of colour.entries()) expect(Math.abs(channel - COLOURS[i]![c]!), `frame ${i} channel ${c}`).toBeLessThan(24);
    }
    // Nothing left behind beside the video: no temporary frame links, no partial file.
    expect(readdirSync(dir).filter((name) => name.startsWith('.'))).toEqual([]);
  });

  it('23.976 fps (Blender: 24 / 1.001) stays exact, odd sizes are padded to even, and maxWidth scales down', async () => {
    const ntsc = join(dir, 'ntsc.mp4');
    // Blender keeps fps_base as a 32-bit float: 1.001 reads back as 1.0010000467300415.
    await assemblePreviewVideo({ frames: makeFrames(33, 17, 'odd'), fps: { fps: 24, fpsBase: Math.fround(1.001) }, outPath: ntsc });
    expect(ffprobe(ntsc)).toMatchObject({ nb_read_frames: '7', r_frame_rate: '24000/1001', width: 34, height: 18 });

    const small = join(dir, 'small.mp4');
    await assemblePreviewVideo({ frames: makeFrames(200, 100, 'big'), fps: 30, outPath: small, maxWidth: 64 });
    expect(ffprobe(small)).toMatchObject({ nb_read_frames: '7', r_frame_rate: '30/1', width: 64, height: 32 });
  });

  it("fails, with ffmpeg's words, on a frame that is not an image, and refuses missing frames and mixed formats", async () => {
    const frames = makeFrames(16, 16, 'bad');
    writeFileSync(frames[3]!.path, 'not a png');
    // Left to itself ffmpeg skips the frame, exits 0 and writes a video one frame short.
    await expect(assemblePreviewVideo({ frames, fps: 24, outPath: join(dir, 'bad.mp4') })).rejects.toThrow(
      /making the preview video: ffmpeg exited with 1:\n.*Invalid PNG signature/,
    );
    const missing = makeFrames(16, 16, 'missing');
    rmSync(missing[2]!.path);
    await expect(assemblePreviewVideo({ frames: missing, fps: 24, outPath: join(dir, 'missing.mp4') })).rejects.toThrow(/frame 3: ENOENT/);
    const mixed = [...makeFrames(16, 16, 'mixed'), { frame: 11, path: join(dir, 'x.jpg') }];
    await expect(assemblePreviewVideo({ frames: mixed, fps: 24, outPath: join(dir, 'mixed.mp4') })).rejects.toThrow(/frame 11 is .jpg but frame 1 is .png/);
  });
});

describe('scene frame rate', () => {
  it('frameRateOf turns Blender pairs and decimals into exact fractions', () => {
    expect(frameRateOf({ fps: 25, fpsBase: 1 }).text).toBe('25/1');
    expect(frameRateOf({ fps: 30, fpsBase: Math.fround(1.001) }).text).toBe('30000/1001');
    expect(frameRateOf({ fps: 60, fpsBase: 2 }).text).toBe('30/1');
    expect(frameRateOf(23.976).text).toBe('24000/1001');
    expect(frameRateOf(29.97).text).toBe('30000/1001');
    expect(frameRateOf(12.5).text).toBe('25/2');
    expect(() => frameRateOf(0)).toThrow(/positive/);
  });

  it('the frame rate probe reads only its own line', () => {
    expect(sceneFpsProbe.parse('FARM_SCENE_FPS {"fps": 24, "fps_base": 1.0010000467300415}')).toEqual({ fps: 24, fpsBase: 1.0010000467300415 });
    expect(sceneFpsProbe.parse('Fra:1 Mem:12.00M')).toBeUndefined();
    expect(sceneFpsProbe.parse('FARM_SCENE_FPS {"fps": 0, "fps_base": 1}')).toBeUndefined();
    expect(sceneFpsProbe.expr).not.toContain('\n');
  });

  it('readSceneFps reads 25 fps from a generated .blend', async () => {
    const dir = tempDir('scene-fps');
    try {
      const blend = join(dir, 'fps25.blend');
      const made = spawnSync(BLENDER, ['-b', '--factory-startup', '--python', join(SCENES, 'make_still_scene.py'), '--', blend, '--fps', '25'], {
        encoding: 'utf8',
      });
      expect(made.status, made.stdout + made.stderr).toBe(0);
      const rate = await readSceneFps(BLENDER, blend);
      expect(rate).toEqual({ fps: 25, fpsBase: 1 });
      expect(frameRateOf(rate).text).toBe('25/1');
      await expect(readSceneFps(BLENDER, join(dir, 'missing.blend'))).rejects.toThrow(/reading the frame rate of .*missing.blend/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
