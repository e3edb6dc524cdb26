/**
 * The Blender command, runner and parser together, against real Blender on generated
 * scenes (test/scenes/). Needs Blender 3.x as $BLENDER or `blender` on PATH.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';
import { classifyBlenderFailure } from '../../worker-node/blender/classify-failure.ts';
import { parseBlenderLine, type BlenderEvent } from '../../worker-node/blender/output-parser.ts';
import { buildRenderArgs, type RenderSpec } from '../../worker-node/blender/render-args.ts';
import { runProcess } from '../../worker-node/process/run-process.ts';
import { writeTruncatedBlend } from '../scenes/corrupt-blend.ts';

const BLENDER = process.env.BLENDER ?? 'blender';
const SCENES = new URL('../scenes/', import.meta.url).pathname;
const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Runs a scene generator; throws with Blender's output if it fails. */
function makeScene(script: string, args: string[]): void {
  const result = spawnSync(BLENDER, ['-b', '--factory-startup', '--python', join(SCENES, script), '--', ...args], { encoding: 'utf8' });
  if (result.status !== 0)
    throw new Error(`${script} failed (${result.status ?? result.signal}): ${result.error?.message ?? ''}\n${result.stdout}${result.stderr}`);
}

/** Renders through the same path the task runner uses, collecting parsed events. */
async function render(spec: RenderSpec) {
  const events: BlenderEvent[] = [];
  const result = await runProcess(BLENDER, buildRenderArgs(spec), {
    onLine: (line) => {
      const event = parseBlenderLine(line);
      if (event) events.push(event);
    },
  });
  const of = <K extends BlenderEvent['kind']>(kind: K) => events.filter((e): e is Extract<BlenderEvent, { kind: K }> => e.kind === kind);
  return { result, of };
}

describe('rendering with real Blender', () => {
  const dir = tempDir('blender-render');
  const anim = join(dir, 'anim.blend');
  const autorun = join(dir, 'autorun.blend');
  const marker = join(dir, 'marker', 'autorun-ran');

  beforeAll(() => {
    makeScene('make_anim_scene.py', [anim, '--frames', '8']);
    makeScene('make_autorun_scene.py', [autorun, marker]);
  }, 30_000);

  it('frames 1-3 of the particle scene: three saved PNGs, in order, each with a parsed render time', async () => {
    const out = join(dir, 'contiguous');
    const { result, of } = await render({ blendPath: anim, outputPattern: join(out, 'frame_######'), frames: [1, 2, 3], threads: 2 });
    expect(result.exitCode, result.tail.join('\n')).toBe(0);

    const saved = of('saved');
    expect(saved).toEqual([1, 2, 3].map((frame) => ({ kind: 'saved', frame, path: join(out, `frame_00000${frame}.png`) })));
    for (const { path } of saved) expect(readFileSync(path).subarray(0, 8)).toEqual(PNG_MAGIC);

    const times = of('time');
    expect(times).toHaveLength(3);
    for (const { seconds } of times) {
      expect(seconds).toBeGreaterThan(0);
      expect(seconds).toBeLessThan(10);
    }
    // Cycles reported its samples for every frame, and memory.
    const lastSample = (frame: number) =>
      of('progress')
        .filter((p) => p.frame === frame && p.samplesTotal)
        .at(-1);
    for (const frame of [1, 2, 3]) expect(lastSample(frame)).toMatchObject({ samplesDone: 16, samplesTotal: 16 });
    expect(Math.max(...of('progress').map((p) => p.peakMb ?? 0))).toBeGreaterThan(1);
    expect(of('error')).toEqual([]);
  });

  it('sparse frames with a format override render through -f into files with the new extension', async () => {
    const out = join(dir, 'sparse');
    const { result, of } = await render({ blendPath: anim, outputPattern: join(out, 'f_####'), frames: [2, 5], format: 'JPEG' });
    expect(result.exitCode, result.tail.join('\n')).toBe(0);
    expect(of('saved')).toEqual([
      { kind: 'saved', frame: 2, path: join(out, 'f_0002.jpg') },
      { kind: 'saved', frame: 5, path: join(out, 'f_0005.jpg') },
    ]);
    expect(readFileSync(join(out, 'f_0005.jpg')).subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
  });

  it('a truncated .blend fails with exit 1 and is classified as corrupt', async () => {
    const broken = join(dir, 'truncated.blend');
    await writeTruncatedBlend(anim, broken);
    const { result, of } = await render({ blendPath: broken, outputPattern: join(dir, 'never', 'f_####'), frames: [1] });
    expect(result.exitCode).toBe(1);
    expect(of('error')).toEqual([{ kind: 'error', message: `Failed to read blend file '${broken}': Missing DNA block` }]);
    expect(classifyBlenderFailure(result)).toMatchObject({ reason: 'corrupt_file', message: expect.stringContaining('Missing DNA block') });
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });

  it("the node's command line does not run scripts embedded in the .blend, which Blender would run with -y", async () => {
    const { result, of } = await render({ blendPath: autorun, outputPattern: join(dir, 'autorun', 'f_####'), frames: [1] });
    expect(result.exitCode, result.tail.join('\n')).toBe(0);
    expect(of('saved')).toHaveLength(1);
    expect(of('warning')).toContainEqual(expect.objectContaining({ path: 'autorun_marker.py' }));
    expect(existsSync(marker)).toBe(false);

    // The control: with auto-run allowed the same file does write the marker.
    const trusted = spawnSync(BLENDER, ['-b', '-y', autorun, '--python-expr', 'pass'], { encoding: 'utf8' });
    expect(trusted.status).toBe(0);
    expect(readFileSync(marker, 'utf8')).toBe('autorun script executed\n');
  });
});
