/**
 * Missing external files. Blender 3.4 renders a file whose image texture is missing without a
 * word (the texture comes out magenta) and one whose linked library is missing with only a
 * warning (the linked objects are left out); either way it exits 0. A farm must say so: the
 * node asks Blender to list missing files before rendering and turns what Blender prints into
 * job warnings that read the same on every node, each saying what the missing file does to the
 * render by what it is (protocol/missing-files.ts: an image, a library, a cache, a font, …).
 */
import { dirname } from 'node:path';
import { missingConsequence, missingKindOf, type MissingKind } from '../../protocol/missing-files.ts';
import type { BlenderEvent } from './output-parser.ts';

/**
 * Run after the file loads: prints `Warning: Path '<path>' not found` for every external file
 * (image, movie, library, sound, font, volume, Alembic or mesh cache) that is not there. Blender
 * 3.4 leaves out point-cache and fluid-cache folders; `farm submit` warns about those. Guarded,
 * so that a Blender where the operator is unavailable still renders.
 */
export const REPORT_MISSING_FILES_EXPR = [
  'import bpy',
  'try:',
  '    bpy.ops.file.report_missing_files()',
  'except Exception as error:',
  '    print("farm: could not list missing files:", error)',
].join('\n');

/**
 * The job warning for one of Blender's output events, or null when the event is not about a
 * missing file. Paths next to the .blend are shown relative to it (`//textures/x.png`), as the
 * artist set them, rather than as this node's cache path, so every node reports the same line.
 *
 * Blender's lines name a library as one ("Unable to open", "Cannot find lib"); report_missing_files
 * names only a path, so what it is comes from the path (its extension, or none for a folder).
 */
export function missingFileWarning(event: BlenderEvent | null, blendPath: string): string | null {
  if (event?.kind !== 'warning' || event.path === undefined) return null;
  const path = relativeToBlend(event.path, blendPath);
  const message = event.message;
  if (/^Unable to open '/.test(message) || /^Cannot find lib '/.test(message)) return warning('library', path);
  const linked = /^LIB: (\w+): '([^']*)' missing from '/.exec(message);
  if (linked) return `missing linked ${linked[1]!.toLowerCase()} "${linked[2]}" from ${path}: it is left out of the render`;
  if (/^Path '/.test(message)) return warning(missingKindOf(event.path), path);
  return null;
}

function warning(kind: MissingKind, path: string): string {
  return `missing ${kind} ${path}: ${missingConsequence(kind)}`;
}

function relativeToBlend(path: string, blendPath: string): string {
  const folder = `${dirname(blendPath)}/`;
  return path.startsWith(folder) ? `//${path.slice(folder.length)}` : path;
}

/** Collects a task's missing-file warnings once each, and hands out the ones not sent yet. */
export class MissingFiles {
  private readonly seen = new Set<string>();
  private pending: string[] = [];
  private readonly blendPath: string;
  /** Warnings beyond this many per task are dropped: the master keeps a bounded list anyway. */
  private readonly max: number;

  constructor(blendPath: string, max = 50) {
    this.blendPath = blendPath;
    this.max = max;
  }

  /** Looks at one parsed output line. */
  add(event: BlenderEvent | null): void {
    const warning = missingFileWarning(event, this.blendPath);
    if (warning === null || this.seen.has(warning) || this.seen.size >= this.max) return;
    this.seen.add(warning);
    this.pending.push(warning);
  }

  /** The warnings not handed out before; call `unsend` with them if sending failed. */
  take(): string[] {
    const out = this.pending;
    this.pending = [];
    return out;
  }

  unsend(warnings: string[]): void {
    this.pending = [...warnings, ...this.pending];
  }

  /** Every warning seen, for the final report. */
  all(): string[] {
    return [...this.seen];
  }
}
