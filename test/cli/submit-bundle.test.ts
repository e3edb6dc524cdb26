/**
 * The parts of `farm submit` that run before any network: Blender's dependency listing on
 * generated scenes, the bundle's layout and determinism, and the round trip of a bundle through
 * the node's guarded unpacker.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commonRoot, planBundle, sha256OfFile, writeBundle } from '../../cli/bundle.ts';
import { parseFrames } from '../../cli/commands/submit.ts';
import { dependencyWarnings, listDependencies, type DependencyReport } from '../../cli/deps/list-deps.ts';
import { resolveMainBlend, unpackProject } from '../../worker-node/project-unpack.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const BLENDER = process.env.BLENDER ?? 'blender';

function makeProject(script: string, outDir: string): void {
  execFileSync(BLENDER, ['-b', '--factory-startup', '--python', join(ROOT, 'test', 'scenes', script), '--', outDir], { stdio: 'ignore', timeout: 120_000 });
}

const rel = (report: DependencyReport, base: string) =>
  report.files.map((f) => ({ kind: f.kind, ref: f.ref, path: f.path.slice(base.length + 1) }));

describe('listing dependencies with Blender', () => {
  const dir = mkdtempSync(join(tmpdir(), 'farm-deps-'));
  beforeAll(() => {
    makeProject('make_texture_scene.py', join(dir, 'texture'));
    makeProject('make_linked_scene.py', join(dir, 'linked'));
  }, 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

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
    const files = rel(report, join(dir, 'linked')).map((f) => `${f.kind} ${f.path}`).sort();
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
    expect(warnings).toEqual([`missing udim tile //tex/udim.1002.png (udim), needed by scene.blend: not found at ${join(broken, 'tex', 'udim.1002.png')}`]);

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

  it('never runs the Python a .blend carries (--disable-autoexec)', async () => {
    const blend = join(dir, 'autorun.blend');
    const marker = join(dir, 'autorun-ran.txt');
    execFileSync(BLENDER, ['-b', '--factory-startup', '--python', join(ROOT, 'test', 'scenes', 'make_autorun_scene.py'), '--', blend, marker], { stdio: 'ignore' });
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
  const dir = mkdtempSync(join(tmpdir(), 'farm-bundle-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

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
    expect(createHash('sha256').update(readFileSync(join(out, 'main.blend'))).digest('hex')).toBe(
      createHash('sha256').update(readFileSync(join(dir, 'proj/main.blend'))).digest('hex'),
    );
    expect(await resolveMainBlend(out, plan.mainBlend)).toBe(join(out, 'main.blend'));
  });
});

describe('--frames', () => {
  it('reads ranges and single frames, and refuses anything else', () => {
    expect(parseFrames('1-250')).toEqual({ start: 1, end: 250 });
    expect(parseFrames('7')).toEqual({ start: 7, end: 7 });
    expect(parseFrames(' 10 .. 20 ')).toEqual({ start: 10, end: 20 });
    expect(() => parseFrames('20-10')).toThrow('first frame is after the last');
    expect(() => parseFrames('1,2,3')).toThrow('--frames must look like 1-250 or 7');
    expect(() => parseFrames('-5')).toThrow('--frames must look like');
    expect(() => parseFrames('0-2000000')).toThrow('--frames must be within 0-1048574');
  });
});
