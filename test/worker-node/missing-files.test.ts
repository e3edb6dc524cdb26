/**
 * Missing textures and libraries become job warnings: Blender's lines (real Blender 3.4.1 logs
 * in fixtures/, and real Blender on a generated scene) turned into one line per missing file that
 * reads the same on every node.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MissingFiles, missingFileWarning, REPORT_MISSING_FILES_EXPR } from '../../worker-node/blender/missing-files.ts';
import { parseBlenderLine } from '../../worker-node/blender/output-parser.ts';
import { buildRenderArgs } from '../../worker-node/blender/render-args.ts';
import { runProcess } from '../../worker-node/process/run-process.ts';
import { fixtureLines } from './blender-fixtures.ts';

const BLENDER = process.env.BLENDER ?? 'blender';
const SCENES = new URL('../scenes/', import.meta.url).pathname;

const TEXTURE = 'missing file //textures/missing_texture.png: a missing image renders magenta';
const LIBRARY = 'missing library //missing_library.blend: what the file links from it is left out of the render';
const LINKED = 'missing linked object "LibCube" from //missing_library.blend: it is left out of the render';

function warningsOf(lines: string[], blendPath: string): string[] {
  const found = new MissingFiles(blendPath);
  for (const line of lines) found.add(parseBlenderLine(line));
  return found.all();
}

describe('missingFileWarning', () => {
  it("a texture reported missing by report_missing_files, relative to the .blend as the artist set it", () => {
    expect(warningsOf(fixtureLines('missing-texture.txt'), '/tmp/w/fx/missingtex.blend')).toEqual([
      'missing file //textures/gone.png: a missing image renders magenta',
    ]);
  });

  it('a missing library is one warning however many ways Blender says it, plus one per linked data-block', () => {
    expect(warningsOf(fixtureLines('missing-library.txt'), '/tmp/w/fx/missinglib.blend')).toEqual([
      'missing library //lib.blend: what the file links from it is left out of the render',
      'missing linked object "LibCube" from //lib.blend: it is left out of the render',
    ]);
  });

  it('paths outside the .blend folder stay absolute; other warnings and lines are not about missing files', () => {
    expect(missingFileWarning(parseBlenderLine("Warning: Path '/mnt/assets/wood.png' not found"), '/node/blend_files/x.blend')).toBe(
      'missing file /mnt/assets/wood.png: a missing image renders magenta',
    );
    for (const line of ['Warning: Unknown render engine', 'Fra:1 Mem:9.16M (Peak 10.87M) | Time:00:00.01 | Scene', "Saved: '/x/f.png'", 'Error: Cannot render, no camera']) {
      expect(missingFileWarning(parseBlenderLine(line), '/x/a.blend')).toBeNull();
    }
  });

  it('hands out each warning once, and again after a failed send', () => {
    const found = new MissingFiles('/w/s.blend', 2);
    found.add(parseBlenderLine("Warning: Path '/w/a.png' not found"));
    found.add(parseBlenderLine("Warning: Path '/w/a.png' not found"));
    const first = found.take();
    expect(first).toEqual(['missing file //a.png: a missing image renders magenta']);
    expect(found.take()).toEqual([]);
    found.unsend(first);
    found.add(parseBlenderLine("Warning: Path '/w/b.png' not found"));
    found.add(parseBlenderLine("Warning: Path '/w/c.png' not found")); // over the cap of 2
    expect(found.take()).toEqual(['missing file //a.png: a missing image renders magenta', 'missing file //b.png: a missing image renders magenta']);
    expect(found.all()).toHaveLength(2);
  });
});

describe('with real Blender', () => {
  const dir = mkdtempSync(join(tmpdir(), 'missing-files-'));
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
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('renders (exit 0) and, with the farm\'s report expression, names the missing texture and library', async () => {
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
