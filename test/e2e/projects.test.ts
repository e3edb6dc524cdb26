/**
 * Real projects through `farm submit`: scenes whose textures (with UDIM tiles) and linked
 * libraries live in files beside them, sent by the real CLI to the real master (wrangler dev) and
 * rendered by a real node with real Blender. Frames are decoded and their pixels checked: the
 * textures' colours, not Blender's magenta for a missing image.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { FrameInfo, JobStatusResponse } from '../../protocol/schemas.ts';
import { BLENDER, jobStatus, ROOT, startMaster, startNode, submitJob, tempDir, waitForJob, type Master, type RenderNode } from './harness.ts';
import { decodePng, type DecodedImage } from './png.ts';
import { runFarm } from './upload-measure.ts';

const MAGENTA = [255, 0, 255];
/** The CLI's line once it knows what to upload: a single file's, or a project manifest's. */
const UPLOAD_LINE = /^(uploaded|the master already has|the master lacks|the master has all)/m;

/** Runs a scene generator that writes a folder, and returns the colours it printed. */
function makeProject(script: string, outDir: string): { blend: string; colors: Record<string, number[]> } {
  const stdout = execFileSync(BLENDER, ['-b', '--factory-startup', '--python', join(ROOT, 'test', 'scenes', script), '--', outDir], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  const last = stdout
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .pop();
  return JSON.parse(last!) as { blend: string; colors: Record<string, number[]> };
}

function pixel(image: DecodedImage, x: number, y: number): number[] {
  const i = (y * image.width + x) * 4;
  return [image.data[i]!, image.data[i + 1]!, image.data[i + 2]!];
}

/** Colours equal within `tolerance` per channel (8-bit rounding of sRGB round trips). */
function expectColor(actual: number[], expected: number[], what: string, tolerance = 3): void {
  const close = actual.every((v, i) => Math.abs(v - expected[i]!) <= tolerance);
  expect(close, `${what}: got rgb(${actual.join(', ')}), expected about rgb(${expected.join(', ')})`).toBe(true);
}

async function frameOf(master: Master, jobId: string, frame = 1): Promise<DecodedImage> {
  const { frames } = (await (await fetch(`${master.url}/jobs/${jobId}/frames`)).json()) as { frames: FrameInfo[] };
  const info = frames.find((f) => f.frame === frame);
  expect(info, `frame ${frame} of job ${jobId}`).toBeDefined();
  return decodePng(Buffer.from(await (await fetch(`${master.url}${info!.url}`)).arrayBuffer()));
}

interface SubmitOutput {
  job_id: string;
  kind: string;
  main_blend: string | null;
  files: number;
  uploaded_bytes: number;
  warnings: string[];
}

async function farmSubmit(master: Master, blend: string, extra: string[] = []): Promise<{ result: SubmitOutput; stderr: string }> {
  const run = await runFarm(['--master', master.url, 'submit', blend, '--frames', '1-1', '--json', '--no-progress', ...extra], { env: { BLENDER } });
  expect(run.code, `farm submit failed:\n${run.stderr}`).toBe(0);
  return { result: JSON.parse(run.stdout) as SubmitOutput, stderr: run.stderr };
}

describe('farm submit sends what a scene needs, and the node renders with it', () => {
  const dir = tempDir('e2e-projects');
  let master: Master;
  let node: RenderNode;

  beforeAll(async () => {
    master = await startMaster({ name: 'projects' });
    node = startNode({ name: 'projects', master: master.url });
  });

  it('a scene with external textures and UDIM tiles renders in the textures’ colours, not magenta', async () => {
    const scene = makeProject('make_texture_scene.py', join(dir, 'texture'));
    const { result, stderr } = await farmSubmit(master, scene.blend, ['--name', 'textured']);
    // Sent file by file (a manifest), the node lays the project out from its file cache.
    expect(result).toMatchObject({ kind: 'manifest', main_blend: 'scene.blend', files: 4, warnings: [] });
    expect(stderr).toContain('3 file(s) besides the .blend');

    const status = await waitForJob(master.url, result.job_id, ['completed', 'failed'], 120_000);
    expect(status, JSON.stringify(status)).toMatchObject({ status: 'completed', completed_frames: 1 });
    const frame = await frameOf(master, result.job_id);
    expect([frame.width, frame.height]).toEqual([96, 32]);
    expectColor(pixel(frame, 16, 16), scene.colors['tex/color.png']!, 'the plain texture');
    expectColor(pixel(frame, 48, 16), scene.colors['tex/udim.1001.png']!, 'UDIM tile 1001');
    expectColor(pixel(frame, 80, 16), scene.colors['tex/udim.1002.png']!, 'UDIM tile 1002');

    // The same .blend sent alone (the seed's submit) renders magenta there: the colours above
    // came from the bundle, not from anything the node could find by itself.
    const alone = await submitJob(master.url, new Blob([readFileSync(scene.blend)]), { start_frame: 1, end_frame: 1 });
    await waitForJob(master.url, alone.job_id, ['completed', 'failed'], 120_000);
    const magenta = await frameOf(master, alone.job_id);
    expectColor(pixel(magenta, 16, 16), MAGENTA, 'the texture missing on the node');
    expectColor(pixel(magenta, 80, 16), MAGENTA, 'the UDIM tile missing on the node');
  });

  it('a shot linking a library from ../assets, which links another and has its own texture, renders whole', async () => {
    const scene = makeProject('make_linked_scene.py', join(dir, 'linked'));
    // ../assets is outside the .blend's folder: sent only when asked, and the widening is said.
    // As one .zip (--zip), which the node unpacks.
    const { result, stderr } = await farmSubmit(master, scene.blend, ['--include-outside', '--zip']);
    // Bundled from the common folder of shots/ and assets/, so `//../assets/lib.blend` resolves.
    expect(result).toMatchObject({ kind: 'zip', main_blend: 'shots/main.blend', files: 4 });
    expect(result.warnings).toHaveLength(1);
    expect(result.warnings[0]).toMatch(/^--include-outside: sending 3 file\(s\) from outside .*The bundle root widened from .*shots to .*linked$/);
    expect(stderr).toMatch(/bundle: 4 files under .*linked, main \.blend shots\/main\.blend/);

    const status = await waitForJob(master.url, result.job_id, ['completed', 'failed'], 120_000);
    expect(status, JSON.stringify(status)).toMatchObject({ status: 'completed', completed_frames: 1 });
    const frame = await frameOf(master, result.job_id);
    expectColor(pixel(frame, 16, 16), scene.colors.wood!, "the library's crate, textured from the library's own folder");
    expectColor(pixel(frame, 48, 16), scene.colors.marker!, 'the marker, linked by the library from nested/deep.blend');
    // The node unpacked the project into its cache by hash, and nothing else.
    const projects = readdirSync(join(node.workDir, 'projects'));
    expect(projects.some((p) => /^[0-9a-f]{64}$/.test(p))).toBe(true);
    expect(projects.filter((p) => p.includes('.tmp-'))).toEqual([]);
  });

  it('missing textures are listed as warnings before the upload and kept with the job', async () => {
    const source = join(dir, 'texture');
    const broken = join(dir, 'broken');
    cpSync(source, broken, { recursive: true });
    rmSync(join(broken, 'tex', 'udim.1002.png'));
    rmSync(join(broken, 'tex', 'color.png'));
    expect(existsSync(join(broken, 'tex', 'udim.1001.png'))).toBe(true);

    const { result, stderr } = await farmSubmit(master, join(broken, 'scene.blend'));
    const warnings = stderr.split('\n').filter((l) => l.startsWith('warning: '));
    expect(warnings).toHaveLength(2);
    expect(warnings.join('\n')).toContain('missing image //tex/color.png');
    expect(warnings.join('\n')).toContain('missing udim tile //tex/udim.1002.png');
    // Printed before the upload started.
    expect(stderr.indexOf('warning: ')).toBeLessThan(stderr.search(UPLOAD_LINE));
    expect(result.files).toBe(2);
    const status: JobStatusResponse = await jobStatus(master.url, result.job_id);
    expect(status.warnings).toEqual(result.warnings);
    expect(status.warnings).toHaveLength(2);
  });

  it('--strict refuses to upload a scene with missing files', async () => {
    const run = await runFarm(['--master', master.url, 'submit', join(dir, 'broken', 'scene.blend'), '--frames', '1-1', '--strict', '--no-progress'], {
      env: { BLENDER },
    });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--strict: 2 dependenc(ies) cannot be sent');
    expect(run.stderr).not.toMatch(UPLOAD_LINE);
  });
});
