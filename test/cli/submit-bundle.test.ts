/**
 * The parts of `farm submit` that run before any network: Blender's dependency listing on
 * generated scenes, the bundle's layout and determinism, and the round trip of a bundle through
 * the node's guarded unpacker.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';
import { commonRoot, outsideWarnings, planBundle, sha256OfFile, splitByProject, writeBundle } from '../../cli/bundle.ts';
import { parseFrames } from '../../cli/commands/submit.ts';
import { dependencyWarnings, listDependencies, type DependencyReport } from '../../cli/deps/list-deps.ts';
import { resolveMainBlend, unpackProject } from '../../worker-node/project-unpack.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const BLENDER = process.env.BLENDER ?? 'blender';

function makeProject(script: string, outDir: string): void {
  execFileSync(BLENDER, ['-b', '--factory-startup', '--python', join(ROOT, 'test', 'scenes', script), '--', outDir], { stdio: 'ignore', timeout: 120_000 });
}

const rel = (report: DependencyReport, base: string) => report.files.map((f) => ({ kind: f.kind, ref: f.ref, path: f.path.slice(base.length + 1) }));

describe('listing dependencies with Blender', () => {
  const dir = tempDir('deps');
  beforeAll(() => {
    makeProject('make_texture_scene.py', join(dir, 'texture'));
    makeProject('make_linked_scene.py', join(dir, 'linked'));
  }, 120_000);

  it('finds a texture and every UDIM tile, by the paths the .blend uses, and the scene range', async () => {
    const report = await listDependencies(join(dir, 'texture', 'scene.blend'), BLENDER);
    expect(rel(report, join(dir, 'texture'))).toEqual([
      { kind: 'image', ref: '//tex/color.png', path: 'tex/color.png' },
      { kind: 'udim tile', ref: '//tex/udim.1001.png', path: 'tex/udim.1001.png' },
      { kind: 'udim tile', ref: '//tex/udim.1002.png', path: 'tex/udim.1002.png' },
    ]);
    expect(report.missing).toEqual([]);
    expect(report.scene).toMatchObject({ frame_start: 1, frame_end: 1, has_camera: true, engine: 'CYCLES' });
    expect(dependencyWarnings(report)).toEqual([]);
  });

  it('follows linked libraries recursively, with each library’s own relative paths', async () => {
    const report = await listDependencies(join(dir, 'linked', 'shots', 'main.blend'), BLENDER);
    const files = rel(report, join(dir, 'linked'))
      .map((f) => `${f.kind} ${f.path}`)
      .sort();
    expect(files).toEqual(['image assets/tex/wood.png', 'library assets/lib.blend', 'library assets/nested/deep.blend']);
    // The texture is referenced by the library, relative to the library's folder.
    const wood = report.files.find((f) => f.kind === 'image')!;
    expect(wood).toMatchObject({ ref: '//tex/wood.png', from: join(dir, 'linked', 'assets', 'lib.blend') });
  });

  it('reports missing files and absolute paths as warnings', async () => {
    const broken = join(dir, 'broken');
    cpSync(join(dir, 'texture'), broken, { recursive: true });
    rmSync(join(broken, 'tex', 'udim.1002.png'));
    const report = await listDependencies(join(broken, 'scene.blend'), BLENDER);
    expect(report.missing.map((m) => m.ref)).toEqual(['//tex/udim.1002.png']);
    const warnings = dependencyWarnings(report, (p) => p.slice(broken.length + 1));
    expect(warnings).toEqual([
      `missing udim tile //tex/udim.1002.png (udim), needed by scene.blend: not found at ${join(broken, 'tex', 'udim.1002.png')}; it renders magenta`,
    ]);

    // A scene whose texture is written as an absolute path: bundling cannot help; say so.
    const absolute = join(dir, 'absolute');
    mkdirSync(absolute);
    const script = `import bpy\nimg = bpy.data.images.load(${JSON.stringify(join(broken, 'tex', 'color.png'))})\nimg.filepath = ${JSON.stringify(join(broken, 'tex', 'color.png'))}\nimg.use_fake_user = True\nbpy.ops.wm.save_as_mainfile(filepath=${JSON.stringify(join(absolute, 'abs.blend'))}, relative_remap=False)\n`;
    writeFileSync(join(absolute, 'make.py'), script);
    execFileSync(BLENDER, ['-b', '--factory-startup', '--python', join(absolute, 'make.py')], { stdio: 'ignore' });
    const abs = await listDependencies(join(absolute, 'abs.blend'), BLENDER);
    expect(abs.files).toEqual([]);
    expect(abs.unportable.map((u) => u.ref)).toEqual([join(broken, 'tex', 'color.png')]);
    expect(dependencyWarnings(abs)[0]).toContain('is an absolute path: render nodes will not find it');
  });

  it('a missing dependency says what the render does without it, by what Blender listed it as', () => {
    const dep = (kind: string, ref: string, path: string) => ({ kind, ref, from: '/p/scene.blend', id: '', path });
    const report: DependencyReport = {
      blender_version: '3.4.1',
      main: '/p/scene.blend',
      scene: { name: 'Scene', frame_start: 1, frame_end: 1, has_camera: true, engine: 'CYCLES' },
      files: [],
      missing: [
        dep('image', '//tex/a.png', '/p/tex/a.png'),
        dep('library', '//lib.blend', '/p/lib.blend'),
        dep('point cache', '//blendcache_scene', '/p/blendcache_scene'),
        dep('fluid cache', '//cache_fluid/', '/p/cache_fluid'),
        dep('cache file', '//anim.abc', '/p/anim.abc'),
        dep('font', '//title.ttf', '/p/title.ttf'),
        dep('sound', '//music.wav', '/p/music.wav'),
        dep('volume', '//smoke.vdb', '/p/smoke.vdb'),
        dep('other', '/p/sim/', '/p/sim'),
      ],
      unportable: [],
    };
    expect(dependencyWarnings(report, (p) => p.slice(3)).map((w) => w.replace(/, needed by .*?; /, ': '))).toEqual([
      'missing image //tex/a.png: it renders magenta',
      'missing library //lib.blend: what the file links from it is left out of the render',
      'missing point cache //blendcache_scene: the simulation or animation it holds is recomputed, or left empty',
      'missing fluid cache //cache_fluid/: the simulation or animation it holds is recomputed, or left empty',
      'missing cache file //anim.abc: the simulation or animation it holds is recomputed, or left empty',
      "missing font //title.ttf: its text falls back to Blender's built-in font",
      'missing sound //music.wav: it is silent (no effect on the frames)',
      'missing volume //smoke.vdb: it renders empty',
      'missing cache /p/sim/: the simulation or animation it holds is recomputed, or left empty',
    ]);
  });

  it('never runs the Python a .blend carries (--disable-autoexec)', async () => {
    const blend = join(dir, 'autorun.blend');
    const marker = join(dir, 'autorun-ran.txt');
    execFileSync(BLENDER, ['-b', '--factory-startup', '--python', join(ROOT, 'test', 'scenes', 'make_autorun_scene.py'), '--', blend, marker], {
      stdio: 'ignore',
    });
    rmSync(marker, { force: true });
    await listDependencies(blend, BLENDER);
    expect(existsSync(marker)).toBe(false);
  });

  it('a file Blender cannot read is a clear error with Blender’s output', async () => {
    const bad = join(dir, 'bad.blend');
    writeFileSync(bad, 'BLENDER-v304 truncated');
    await expect(listDependencies(bad, BLENDER)).rejects.toThrow(/Blender could not read .*bad\.blend to list its dependencies/);
    await expect(listDependencies(bad, '/nonexistent/blender')).rejects.toThrow('Blender was not found');
  });
});

describe('the project bundle', () => {
  const dir = tempDir('bundle');

  function files(spec: Record<string, string>): void {
    for (const [name, content] of Object.entries(spec)) {
      mkdirSync(join(dir, name, '..'), { recursive: true });
      writeFileSync(join(dir, name), content);
    }
  }

  it('is rooted at the deepest folder holding the .blend and all its files', () => {
    expect(commonRoot(['/a/b/c', '/a/b/d/e', '/a/b'])).toBe('/a/b');
    expect(commonRoot(['/a/b', '/x'])).toBe('/');
    const plan = planBundle('/p/shots/s1/main.blend', ['/p/shots/s1/tex/a.png', '/p/assets/lib.blend', '/p/assets/tex/w.png', '/p/shots/s1/tex/a.png']);
    expect(plan).toEqual({
      root: '/p',
      mainBlend: 'shots/s1/main.blend',
      entries: [
        { source: '/p/assets/lib.blend', name: 'assets/lib.blend' },
        { source: '/p/assets/tex/w.png', name: 'assets/tex/w.png' },
        { source: '/p/shots/s1/main.blend', name: 'shots/s1/main.blend' },
        { source: '/p/shots/s1/tex/a.png', name: 'shots/s1/tex/a.png' },
      ],
    });
  });

  it('is byte-for-byte the same for the same files, whatever their timestamps, and unpacks to them', async () => {
    files({ 'proj/main.blend': `BLENDER-v304${'x'.repeat(5000)}`, 'proj/tex/a.png': 'png-bytes', 'proj/cache/ümlaut.bphys': 'cache' });
    const plan = planBundle(join(dir, 'proj/main.blend'), [join(dir, 'proj/tex/a.png'), join(dir, 'proj/cache/ümlaut.bphys')]);
    const first = await writeBundle(plan, join(dir, 'one.zip'));
    utimesSync(join(dir, 'proj/tex/a.png'), new Date('2030-01-01'), new Date('2030-01-01'));
    const second = await writeBundle(plan, join(dir, 'two.zip'));
    expect(second.sha256).toBe(first.sha256);
    expect(await sha256OfFile(join(dir, 'one.zip'))).toBe(first.sha256);
    expect(first.size).toBe(readFileSync(join(dir, 'one.zip')).length);

    // A changed file changes the bundle.
    writeFileSync(join(dir, 'proj/tex/a.png'), 'other-bytes');
    expect((await writeBundle(plan, join(dir, 'three.zip'))).sha256).not.toBe(first.sha256);

    // What the node unpacks is what was bundled, at the same paths.
    const out = join(dir, 'unpacked');
    expect(await unpackProject(join(dir, 'one.zip'), out)).toMatchObject({ files: 3 });
    expect(readFileSync(join(out, 'tex/a.png'), 'utf8')).toBe('png-bytes');
    expect(readFileSync(join(out, 'cache/ümlaut.bphys'), 'utf8')).toBe('cache');
    expect(
      createHash('sha256')
        .update(readFileSync(join(out, 'main.blend')))
        .digest('hex'),
    ).toBe(
      createHash('sha256')
        .update(readFileSync(join(dir, 'proj/main.blend')))
        .digest('hex'),
    );
    expect(await resolveMainBlend(out, plan.mainBlend)).toBe(join(out, 'main.blend'));
  });
});

describe('only the project is sent', () => {
  // proj/scene.blend names a texture beside it, one by `//../secret/x.png`, and one by a path
  // inside the project that is a symbolic link to a file outside it.
  const dir = tempDir('outside');
  const proj = join(dir, 'proj');
  const blend = join(proj, 'scene.blend');

  beforeAll(() => {
    mkdirSync(join(proj, 'tex'), { recursive: true });
    mkdirSync(join(dir, 'secret'));
    writeFileSync(join(proj, 'tex', 'ok.png'), 'inside');
    writeFileSync(join(dir, 'secret', 'x.png'), 'secret by ..');
    writeFileSync(join(dir, 'secret', 'id_rsa'), 'secret by a link');
    symlinkSync(join(dir, 'secret', 'id_rsa'), join(proj, 'tex', 'link.png'));
    const refs = ['//tex/ok.png', '//../secret/x.png', '//tex/link.png'];
    const script = [
      'import bpy',
      ...refs.map(
        (ref, i) => `img = bpy.data.images.new("img${i}", 4, 4)\nimg.source = "FILE"\nimg.filepath = ${JSON.stringify(ref)}\nimg.use_fake_user = True`,
      ),
      `bpy.ops.wm.save_as_mainfile(filepath=${JSON.stringify(blend)}, relative_remap=False)`,
    ].join('\n');
    writeFileSync(join(dir, 'make.py'), script);
    execFileSync(BLENDER, ['-b', '--factory-startup', '--python', join(dir, 'make.py')], { stdio: 'ignore', timeout: 120_000 });
  }, 120_000);

  /** `farm submit --dry-run --json` as a user runs it: what it would send, and its warnings. */
  function dryRun(...flags: string[]): { code: number | null; warnings: string[]; files: number; root: string; entries: string[]; stderr: string } {
    const run = spawnSync(
      process.execPath,
      [join(ROOT, 'cli', 'farm.ts'), '--master', 'http://127.0.0.1:9', 'submit', blend, '--frames', '1', '--dry-run', '--json', '--no-progress', ...flags],
      { encoding: 'utf8', env: { ...process.env, BLENDER }, timeout: 120_000 },
    );
    const result = run.status === 0 ? (JSON.parse(run.stdout) as { warnings: string[]; files: number }) : { warnings: [], files: 0 };
    const bundle = /^bundle: \d+ files under (.*), main \.blend /m.exec(run.stderr);
    const entries = run.stderr
      .split('\n')
      .filter((l) => l.startsWith('  '))
      .map((l) => l.trim());
    return { code: run.status, ...result, root: bundle?.[1] ?? '', entries, stderr: run.stderr };
  }

  it('leaves out a file reached by .. and a link pointing outside, naming each, and keeps the root at the .blend', () => {
    const run = dryRun();
    expect(run.code, run.stderr).toBe(0);
    expect(run.root).toBe(proj);
    expect(run.entries).toEqual(['scene.blend', 'tex/ok.png']);
    expect(run.files).toBe(2);
    expect(run.warnings).toHaveLength(2);
    const [byDots, byLink] = [run.warnings.find((w) => w.includes('//../secret/x.png')), run.warnings.find((w) => w.includes('//tex/link.png'))];
    expect(byDots).toBe(
      `left out image //../secret/x.png (${join(dir, 'secret', 'x.png')}): it is outside the .blend's folder ${proj}, ` +
        'so the render goes without it (it renders magenta); pass --include-outside to send it',
    );
    expect(byLink).toBe(
      `left out image //tex/link.png (${join(proj, 'tex', 'link.png')}, a link to ${join(dir, 'secret', 'id_rsa')}): ` +
        `it is outside the .blend's folder ${proj}, so the render goes without it (it renders magenta); pass --include-outside to send it`,
    );
    // Printed as warnings before anything is sent.
    expect(run.stderr).toContain(`warning: ${byDots}`);
  });

  it('with --include-outside sends them, and says the root widened', () => {
    const run = dryRun('--include-outside');
    expect(run.code, run.stderr).toBe(0);
    expect(run.root).toBe(dir);
    expect(run.entries).toEqual(['proj/scene.blend', 'proj/tex/link.png', 'proj/tex/ok.png', 'secret/x.png']);
    expect(run.warnings).toEqual([
      `--include-outside: sending 2 file(s) from outside the .blend's folder ${proj}: ` +
        `image //tex/link.png (${join(proj, 'tex', 'link.png')}, a link to ${join(dir, 'secret', 'id_rsa')}); image //../secret/x.png (${join(dir, 'secret', 'x.png')}). ` +
        `The bundle root widened from ${proj} to ${dir}`,
    ]);
  });

  it('--strict stops before uploading when a file would be left out', () => {
    const run = dryRun('--strict');
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--strict: 2 dependenc(ies) cannot be sent');
  });

  it('a cache folder outside is named once, by the folder, with its file count and a link it goes through', () => {
    const cache = (name: string) => ({
      kind: 'point cache',
      ref: '//cache',
      from: '/p/shot/main.blend',
      id: 'Cloth',
      path: `/p/shot/cache/${name}`,
      dir: '/p/shot/cache',
    });
    const deps = [cache('a_000001_00.bphys'), cache('a_000002_00.bphys')];
    const outside = deps.map((d) => ({ path: d.path, real: d.path.replace('/p/shot/cache', '/mnt/sims/cloth') }));
    expect(outsideWarnings('/p/shot/main.blend', outside, deps, false)).toEqual([
      'left out point cache folder //cache (/p/shot/cache, a link to /mnt/sims/cloth), 2 files: ' +
        "it is outside the .blend's folder /p/shot, so the render goes without it (the simulation or animation it holds is recomputed, or left empty); " +
        'pass --include-outside to send it',
    ]);
    // Sent, it widens nothing (the link is inside the folder), and the warning says what was sent.
    expect(outsideWarnings('/p/shot/main.blend', outside, deps, true)).toEqual([
      "--include-outside: sending 2 file(s) from outside the .blend's folder /p/shot: point cache folder //cache (/p/shot/cache, a link to /mnt/sims/cloth), 2 files",
    ]);
  });

  it('decides by real paths: .. that comes back in stays, a folder linked from outside does not', async () => {
    mkdirSync(join(dir, 'shared'));
    writeFileSync(join(dir, 'shared', 'wood.png'), 'wood');
    symlinkSync(join(dir, 'shared'), join(proj, 'assets'));
    symlinkSync(join(proj, 'tex', 'ok.png'), join(proj, 'tex', 'alias.png'));
    const split = await splitByProject(blend, [
      join(proj, 'tex', '..', 'tex', 'ok.png'),
      join(proj, 'tex', 'alias.png'),
      join(proj, 'assets', 'wood.png'),
      join(dir, 'secret', 'x.png'),
    ]);
    expect(split.project).toBe(proj);
    expect(split.inside).toEqual([join(proj, 'tex', 'ok.png'), join(proj, 'tex', 'alias.png')]);
    expect(split.outside).toEqual([
      { path: join(proj, 'assets', 'wood.png'), real: join(dir, 'shared', 'wood.png') },
      { path: join(dir, 'secret', 'x.png'), real: join(dir, 'secret', 'x.png') },
    ]);
  });
});

describe('--frames', () => {
  it('reads ranges, single frames and frame lists (protocol/frame-list.ts), and refuses anything else', () => {
    expect(parseFrames('1-250')).toEqual([[1, 250, 1]]);
    expect(parseFrames('7')).toEqual([[7, 7, 1]]);
    expect(parseFrames('1-9x4,12')).toEqual([
      [1, 9, 4],
      [12, 12, 1],
    ]);
    expect(() => parseFrames('20-10')).toThrow('--frames: "20-10" counts down: write the lower frame first (10-20)');
    expect(() => parseFrames('-5')).toThrow('--frames: "-5" is not a frame');
    expect(() => parseFrames('0-2000000')).toThrow('--frames: frame 2000000 in "0-2000000" is outside 0-1048574');
  });
});
