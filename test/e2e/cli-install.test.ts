/**
 * `farm` installed the way a user installs it: the package packed (`npm pack` runs `prepare`,
 * which builds cli/dist/farm.mjs), installed globally into a temporary prefix with the machine's
 * own Node and npm (not the project's Node 22), and run from a folder outside the repository:
 * it submits a frame list, and a real node renders exactly those frames.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BLENDER, makeScene, ROOT, startMaster, startNode, tempDir, waitForJob, type Master } from './harness.ts';

/** The machine's Node: the first `node` on PATH that is not the project's node_modules one. */
function systemNodeDir(): string {
  const found = spawnSync('which', ['-a', 'node'], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter((p) => p && !p.includes('node_modules'));
  if (found.length === 0) throw new Error('no node outside node_modules on PATH');
  return dirname(found[0]!);
}

describe('farm installed globally from its package, on the machine Node', () => {
  const dir = tempDir('cli-install');
  const prefix = join(dir, 'prefix');
  const elsewhere = tempDir('cli-install-cwd');
  const scene = join(dir, 'anim.blend');
  const blender = spawnSync('which', [BLENDER], { encoding: 'utf8' }).stdout.trim() || BLENDER;
  // Only the machine's tools: no node_modules/.bin, so `node` is the machine's and `farm` the installed one.
  const env = { ...process.env, PATH: [join(prefix, 'bin'), systemNodeDir(), '/usr/bin', '/bin'].join(':'), BLENDER: blender };
  const run = (cmd: string, args: string[], cwd = elsewhere): SpawnSyncReturns<string> =>
    spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 180_000 });
  let master: Master;

  beforeAll(async () => {
    const pack = run('npm', ['pack', '--pack-destination', dir], ROOT);
    expect(pack.status, pack.stderr).toBe(0);
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
    const install = run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', join(dir, tarball)]);
    expect(install.status, install.stderr).toBe(0);
    makeScene('make_anim_scene.py', [scene, '--frames', '12', '--width', '48', '--height', '32']);
    master = await startMaster({ name: 'cli-install' });
    startNode({ name: 'cli-install', master: master.url });
  });

  it('runs --help on the machine Node from a folder outside the repository', () => {
    const version = run('node', ['--version']);
    expect(Number(/^v(\d+)/.exec(version.stdout)![1])).toBeGreaterThanOrEqual(20);
    const help = run('farm', ['--help']);
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toContain('Usage: farm');
    expect(help.stdout).toContain('submit');
  });

  it('submits --frames 1-9x4,12 (asking Blender for the scene through the installed lister): frames 1, 5, 9 and 12 render', async () => {
    const bad = run('farm', ['--master', master.url, 'submit', scene, '--frames', '9-1', '--no-progress']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('"9-1" counts down');

    const submit = run('farm', ['--master', master.url, 'submit', scene, '--frames', '1-9x4,12', '--json', '--no-progress', '--no-preview-video']);
    expect(submit.status, submit.stderr).toBe(0);
    const job = JSON.parse(submit.stdout) as { job_id: string; total_frames: number };
    expect(job.total_frames).toBe(4);

    const status = await waitForJob(master.url, job.job_id, ['completed', 'failed'], 240_000);
    expect(status).toMatchObject({ status: 'completed', total_frames: 4, completed_frames: 4, frames: '1-9x4,12' });
    const list = (await (await fetch(`${master.url}/jobs/${job.job_id}/frames`)).json()) as { frames: { frame: number }[] };
    expect(list.frames.map((f) => f.frame)).toEqual([1, 5, 9, 12]);
  });

  it("without --frames takes the scene's range and frame step", () => {
    const stepped = join(dir, 'stepped.blend');
    const make = run(blender, [
      '-b',
      '--factory-startup',
      '--python-expr',
      `import bpy; s = bpy.context.scene; s.frame_start, s.frame_end, s.frame_step = 1, 10, 4; bpy.ops.wm.save_as_mainfile(filepath=${JSON.stringify(stepped)})`,
    ]);
    expect(make.status, make.stderr).toBe(0);
    const dry = run('farm', ['submit', stepped, '--dry-run', '--json', '--no-progress']);
    expect(dry.status, dry.stderr).toBe(0);
    expect((JSON.parse(dry.stdout) as { total_frames: number }).total_frames).toBe(3); // 1, 5, 9
  });
});
