/**
 * Missing textures and libraries become job warnings: Blender's lines (real Blender 3.4.1 logs
 * in fixtures/, and real Blender on a generated scene) turned into one line per missing file that
 * reads the same on every node.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';
import { MissingFiles, missingFileWarning, REPORT_MISSING_FILES_EXPR } from '../../worker-node/blender/missing-files.ts';
import { parseBlenderLine } from '../../worker-node/blender/output-parser.ts';
import { buildRenderArgs } from '../../worker-node/blender/render-args.ts';
import { runProcess } from '../../worker-node/process/run-process.ts';
import { fixtureLines } from './blender-fixtures.ts';

const BLENDER = process.env.BLENDER ?? 'blender';
const SCENES = new URL('../scenes/', import.meta.url).pathname;

const TEXTURE = 'missing image //textures/missing_texture.png: it renders magenta';
const LIBRARY = 'missing library //missing_library.blend: what the file links from it is left out of the render';
const LINKED = 'missing linked object "LibCube" from //missing_library.blend: it is left out of the render';

function warningsOf(lines: string[], blendPath: string): string[] {
  const found = new MissingFiles(blendPath);
  for (const line of lines) found.add(parseBlenderLine(line));
  return found.all();
}

describe('missingFileWarning', () => {
  it('a texture reported missing by report_missing_files, relative to the .blend as the artist set it', () => {
    expect(warningsOf(fixtureLines('missing-texture.txt'), '/tmp/w/fx/missingtex.blend')).toEqual(['missing image //textures/gone.png: it renders magenta']);
  });

  it('a missing library is one warning however many ways Blender says it, plus one per linked data-block', () => {
    expect(warningsOf(fixtureLines('missing-library.txt'), '/tmp/w/fx/missinglib.blend')).toEqual([
      'missing library //lib.blend: what the file links from it is left out of the render',
      'missing linked object "LibCube" from //lib.blend: it is left out of the render',
    ]);
  });

  it('each missing file is named for what it is, with what that does to the render (real Blender 3.4.1 log)', () => {
    expect(warningsOf(fixtureLines('missing-every-kind.txt'), '/tmp/w/kinds/scene.blend')).toEqual([
      'missing library //lib.blend: what the file links from it is left out of the render',
      'missing linked object "LibCube" from //lib.blend: it is left out of the render',
      'missing cache //mc/anim.pc2: the simulation or animation it holds is recomputed, or left empty',
      'missing volume //vdb/smoke.vdb: it renders empty',
      'missing image //tex/a.png: it renders magenta',
      'missing movie //mov/clip.mp4: it renders magenta as a texture and as nothing in the sequencer',
      'missing image //seq/f_0001.png: it renders magenta',
      'missing sound //s.wav: it is silent (no effect on the frames)',
      "missing font //f.ttf: its text falls back to Blender's built-in font",
    ]);
  });

  it.each([
    // Cache folders (point caches, fluid and bakes) and cache files are not images.
    ['/w/sim_cache/', 'missing cache //sim_cache/: the simulation or animation it holds is recomputed, or left empty'],
    ['/w/blendcache_scene', 'missing cache //blendcache_scene: the simulation or animation it holds is recomputed, or left empty'],
    ['/w/cache/fluid_0001.bobj.gz', 'missing cache //cache/fluid_0001.bobj.gz: the simulation or animation it holds is recomputed, or left empty'],
    ['/w/anim/shot.abc', 'missing cache //anim/shot.abc: the simulation or animation it holds is recomputed, or left empty'],
    ['/w/stage.usdc', 'missing cache //stage.usdc: the simulation or animation it holds is recomputed, or left empty'],
    ['/w/cache/cloth_000001_00.bphys', 'missing cache //cache/cloth_000001_00.bphys: the simulation or animation it holds is recomputed, or left empty'],
    ['/w/fx/explosion.VDB', 'missing volume //fx/explosion.VDB: it renders empty'],
    ['/w/tex/skin.<UDIM>.exr', 'missing image //tex/skin.<UDIM>.exr: it renders magenta'],
    ['/w/tex/wood.JPG', 'missing image //tex/wood.JPG: it renders magenta'],
    ['/w/fonts/title.otf', "missing font //fonts/title.otf: its text falls back to Blender's built-in font"],
    ['/w/audio/music.flac', 'missing sound //audio/music.flac: it is silent (no effect on the frames)'],
    ['/w/props.blend', 'missing library //props.blend: what the file links from it is left out of the render'],
    ['/w/notes.xyz', 'missing file //notes.xyz: what uses it renders without it'],
  ])("Blender's \"Path '%s' not found\" reads as what the path is", (path, warning) => {
    expect(missingFileWarning(parseBlenderLine(`Warning: Path '${path}' not found`), '/w/scene.blend')).toBe(warning);
  });

  it('paths outside the .blend folder stay absolute; other warnings and lines are not about missing files', () => {
    expect(missingFileWarning(parseBlenderLine("Warning: Path '/mnt/assets/wood.png' not found"), '/node/blend_files/x.blend')).toBe(
      'missing image /mnt/assets/wood.png: it renders magenta',
    );
    for (const line of [
      'Warning: Unknown render engine',
      'Fra:1 Mem:9.16M (Peak 10.87M) | Time:00:00.01 | Scene',
      "Saved: '/x/f.png'",
      'Error: Cannot render, no camera',
    ]) {
      expect(missingFileWarning(parseBlenderLine(line), '/x/a.blend')).toBeNull();
    }
  });

  it('hands out each warning once, and again after a failed send', () => {
    const found = new MissingFiles('/w/s.blend', 2);
    found.add(parseBlenderLine("Warning: Path '/w/a.png' not found"));
    found.add(parseBlenderLine("Warning: Path '/w/a.png' not found"));
    const first = found.take();
    expect(first).toEqual(['missing image //a.png: it renders magenta']);
    expect(found.take()).toEqual([]);
    found.unsend(first);
    found.add(parseBlenderLine("Warning: Path '/w/b.png' not found"));
    found.add(parseBlenderLine("Warning: Path '/w/c.png' not found")); // over the cap of 2
    expect(found.take()).toEqual(['missing image //a.png: it renders magenta', 'missing image //b.png: it renders magenta']);
    expect(found.all()).toHaveLength(2);
  });
});

describe('with real Blender', () => {
  const dir = tempDir('missing-files');
  // As on a node: the .blend sits in the cache under another name, away from where it was made.
  const made = join(dir, 'made', 'scene.blend');
  const cached = join(dir, 'blend_files', `${'a'.repeat(64)}.blend`);

  beforeAll(() => {
    mkdirSync(join(dir, 'made'));
    mkdirSync(join(dir, 'blend_files'));
    const result = spawnSync(BLENDER, ['-b', '--factory-startup', '--python', join(SCENES, 'make_missing_files_scene.py'), '--', made], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`make_missing_files_scene.py failed: ${result.stdout}${result.stderr}`);
    copyFileSync(made, cached);
  }, 60_000);

  it("renders (exit 0) and, with the farm's report expression, names the missing texture and library", async () => {
    const found = new MissingFiles(cached);
    const args = buildRenderArgs({
      blendPath: cached,
      outputPattern: join(dir, 'out', 'frame_######'),
      frames: [1],
      threads: 1,
      pythonExprs: [REPORT_MISSING_FILES_EXPR],
    });
    const result = await runProcess(BLENDER, args, { onLine: (line) => found.add(parseBlenderLine(line)) });

    expect(result.exitCode).toBe(0);
    expect(found.all()).toEqual(expect.arrayContaining([TEXTURE, LIBRARY, LINKED]));
    expect(found.all()).toHaveLength(3);
  });

  it('without it Blender says nothing about the texture: the expression is what finds it', async () => {
    const found = new MissingFiles(cached);
    const args = buildRenderArgs({ blendPath: cached, outputPattern: join(dir, 'out2', 'frame_######'), frames: [1], threads: 1 });
    const result = await runProcess(BLENDER, args, { onLine: (line) => found.add(parseBlenderLine(line)) });

    expect(result.exitCode).toBe(0);
    expect(found.all()).not.toContain(TEXTURE);
    expect(found.all()).toContain(LIBRARY);
  });
});
