/**
 * The Blender add-on end to end: real Blender 3.4, headless, installs the zip a real master serves
 * at /addon.zip, and `bpy.ops.render_farm.submit()` sends a textured project with an unsaved change
 * file by file (a manifest, each file through the resumable blob upload); a real node renders only
 * the frames asked for, frame 1 equals a local render pixel for pixel, a file outside the project
 * stays behind, the .blend on disk is not touched, and a second submission of the unchanged scene
 * uploads no file.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import type { FrameInfo, JobStatusResponse } from '../../protocol/schemas.ts';
import { BLENDER, ROOT, startMaster, startNode, tempDir, waitForJob, type Master } from './harness.ts';
import { decodePng } from './png.ts';

const execFileAsync = promisify(execFile);
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
/** A frame list (issue 16): the add-on passes it through to POST /jobs. */
const FRAMES = '1-5x2';
const EXPECTED_FRAMES = [1, 3, 5];

describe('the Blender add-on served by the master', () => {
  const dir = tempDir('e2e-addon');
  let master: Master;

  beforeAll(async () => {
    master = await startMaster({ name: 'addon' });
    startNode({ name: 'addon', master: master.url });
  });

  it('installs from /addon.zip and submits from `blender -b`: the node renders what Blender renders', async () => {
    const project = join(dir, 'project');
    execFileSync(BLENDER, ['-b', '--factory-startup', '--python', join(ROOT, 'test', 'scenes', 'make_texture_scene.py'), '--', project], { timeout: 120_000 });
    const blend = join(project, 'scene.blend');
    mkdirSync(join(dir, 'outside'));
    copyFileSync(join(project, 'tex', 'color.png'), join(dir, 'outside', 'secret.png'));
    const before = sha256(readFileSync(blend));
    // The reference, rendered meanwhile by Blender from the file on disk.
    const local = execFileAsync(BLENDER, ['-b', blend, '-o', join(dir, 'local_#'), '-f', '1'], { timeout: 120_000 });

    const response = await fetch(`${master.url}/addon.zip`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/zip');
    const zip = join(dir, 'render_farm.zip');
    writeFileSync(zip, Buffer.from(await response.arrayBuffer()));

    const home = join(dir, 'blender-home');
    const run = await execFileAsync(
      BLENDER,
      ['-b', blend, '--python-exit-code', '1', '--python', join(ROOT, 'test', 'e2e', 'addon_submit.py'), '--', zip, FRAMES],
      {
        timeout: 120_000,
        env: { ...process.env, BLENDER_USER_SCRIPTS: join(home, 'scripts'), BLENDER_USER_CONFIG: join(home, 'config'), FARM_MASTER_URL: master.url },
      },
    );
    const lines = run.stdout.split('\n');
    const jobIds = lines.filter((l) => /^job_id=\S+$/.test(l)).map((l) => l.slice('job_id='.length));
    expect(jobIds, run.stdout).toHaveLength(2);
    const [jobId, secondJobId] = jobIds as [string, string];
    expect(lines).toContain(`last_job_id=${jobId}`);
    expect(lines).toContain(`last_job_id=${secondJobId}`);

    const status = await waitForJob(master.url, jobId, ['completed', 'failed'], 90_000);
    // The scene's render_farm.order travelled with the submission.
    expect(status, JSON.stringify(status)).toMatchObject({
      status: 'completed',
      total_frames: EXPECTED_FRAMES.length,
      completed_frames: EXPECTED_FRAMES.length,
      order: 'progressive',
    });
    const { frames } = (await (await fetch(`${master.url}/jobs/${jobId}/frames`)).json()) as { frames: FrameInfo[] };
    expect(frames.map((f) => f.frame)).toEqual(EXPECTED_FRAMES);

    // Frame 1 equals Blender's own render of the file, pixel for pixel (textures included).
    await local;
    const farm = decodePng(Buffer.from(await (await fetch(`${master.url}${frames[0]!.url}`)).arrayBuffer()));
    const reference = decodePng(readFileSync(join(dir, 'local_1.png')));
    expect([farm.width, farm.height]).toEqual([96, 32]);
    expect(farm.pixelHash).toBe(reference.pixelHash);

    // What was uploaded: a manifest of the copy and its textures, each file sent once, not the outside file.
    expect(status.blend_file).toMatch(/^[0-9a-f]{64}\.manifest$/);
    const inputs = ((await (await fetch(`${master.url}/jobs/${jobId}`)).json()) as JobStatusResponse).inputs!;
    expect(inputs.kind).toBe('manifest');
    expect(inputs.files.map((f) => f.path)).toEqual(['scene.blend', 'tex/color.png', 'tex/udim.1001.png', 'tex/udim.1002.png']);
    expect(inputs.sent_bytes).toBe(inputs.total_bytes);
    // The second submission of the unchanged scene uploaded no texture: only the .blend's copy,
    // whose bytes differ (it carries the first job's id in scene.render_farm.last_job_id).
    expect(await waitForJob(master.url, secondJobId, ['completed', 'failed'], 90_000)).toMatchObject({ status: 'completed' });
    const second = ((await (await fetch(`${master.url}/jobs/${secondJobId}`)).json()) as JobStatusResponse).inputs!;
    expect(second.kind).toBe('manifest');
    const textures = (files: { path: string; sha256: string }[]) => files.filter((f) => f.path !== 'scene.blend');
    expect(textures(second.files)).toEqual(textures(inputs.files));
    const secondBlend = second.files.find((f) => f.path === 'scene.blend')!;
    expect(second.sent_bytes).toBe(secondBlend.sha256 === inputs.files[0]!.sha256 ? 0 : secondBlend.size);
    // Said by the add-on before the upload, and confirmed by the node, which did not find it.
    expect(status.warnings, JSON.stringify(status.warnings)).toHaveLength(2);
    expect(status.warnings[0]).toMatch(/^left out .*\/outside\/secret\.png: it is outside the \.blend's folder/);
    expect(status.warnings[1]).toMatch(/^missing image .*\/outside\/secret\.png: it renders magenta$/);

    // The .blend on disk is as it was: the unsaved change travelled in a copy.
    expect(sha256(readFileSync(blend))).toBe(before);
  });
});
