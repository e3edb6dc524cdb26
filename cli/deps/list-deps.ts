/**
 * Asks Blender itself which files a .blend needs (see list_deps.py): it opens the file with the
 * node's safe arguments (worker-node/blender/launch.ts), so no Python inside the file runs, and resolves
 * every path the way it will on a render node.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { missingConsequence, missingKindOf } from '../../protocol/missing-files.ts';
import { blenderArgs } from '../../worker-node/blender/launch.ts';

// From ../deps/ so that the built CLI (cli/dist/farm.mjs, see package.json's build:cli) finds it too.
const SCRIPT = fileURLToPath(new URL('../deps/list_deps.py', import.meta.url));

const dependencySchema = z.object({
  /** image, udim tile, library, sound, point cache, … */
  kind: z.string(),
  /** The path as written in the file (`//tex/a.png`). */
  ref: z.string(),
  /** The .blend that holds the reference (the main file or a library). */
  from: z.string(),
  /** The datablock that uses it. */
  id: z.string(),
  /** Absolute path on this machine. */
  path: z.string(),
  /** Set for files found by listing a cache folder. */
  dir: z.string().optional(),
});
export type Dependency = z.infer<typeof dependencySchema>;

const dependencyReportSchema = z.object({
  blender_version: z.string(),
  main: z.string(),
  scene: z.object({
    name: z.string(),
    frame_start: z.number(),
    frame_end: z.number(),
    frame_step: z.number().optional(),
    has_camera: z.boolean(),
    engine: z.string(),
  }),
  /** Files to bundle. */
  files: z.array(dependencySchema),
  /** Referenced by a `//` path but not on disk. */
  missing: z.array(dependencySchema),
  /** Referenced by an absolute path (or one relative to the working folder): no node can find it there. */
  unportable: z.array(dependencySchema),
});
export type DependencyReport = z.infer<typeof dependencyReportSchema>;

class BlenderError extends Error {
  readonly exitCode: number | null;
  readonly output: string;
  constructor(message: string, exitCode: number | null, output: string) {
    super(message);
    this.name = 'BlenderError';
    this.exitCode = exitCode;
    this.output = output;
  }
}

/** The dependencies of `blendPath`, from `blender` (an executable path or a name on PATH). */
export async function listDependencies(blendPath: string, blender = 'blender', timeoutMs = 300_000): Promise<DependencyReport> {
  const dir = await mkdtemp(join(tmpdir(), 'farm-deps-'));
  const out = join(dir, 'deps.json');
  const args = blenderArgs(blendPath, ['--python', SCRIPT, '--', out]);
  try {
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
      const child = spawn(blender, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      const keep = (chunk: Buffer) => {
        output = (output + chunk.toString('utf8')).slice(-20_000);
      };
      child.stdout.on('data', keep);
      child.stderr.on('data', keep);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(
          (err as NodeJS.ErrnoException).code === 'ENOENT'
            ? new BlenderError(`Blender was not found ("${blender}"): install it or pass --blender /path/to/blender (env BLENDER)`, null, '')
            : err,
        );
      });
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code, output });
      });
    });
    const text = await readFile(out, 'utf8').catch(() => null);
    if (code !== 0 || text === null) {
      const tail = output.trim().split('\n').slice(-15).join('\n');
      throw new BlenderError(`Blender could not read ${blendPath} to list its dependencies (exit ${code}):\n${tail}`, code, output);
    }
    return dependencyReportSchema.parse(JSON.parse(text));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * One line per problem, for the warnings printed before upload and attached to the job. A
 * missing file's line says what the render does without it (protocol/missing-files.ts).
 */
export function dependencyWarnings(report: DependencyReport, relativeTo: (path: string) => string = (p) => p): string[] {
  const warnings: string[] = [];
  for (const dep of report.missing) {
    const kind = missingKindOf(dep.path, dep.kind);
    warnings.push(
      `missing ${dep.kind === 'other' ? kind : dep.kind} ${dep.ref}${dep.id ? ` (${dep.id})` : ''}, needed by ${relativeTo(dep.from)}: not found at ${dep.path}; ${missingConsequence(kind)}`,
    );
  }
  for (const dep of report.unportable) {
    warnings.push(
      `${dep.kind} ${dep.ref}${dep.id ? ` (${dep.id})` : ''} in ${relativeTo(dep.from)} is an absolute path: render nodes will not find it. ` +
        'Make paths relative in Blender (File > External Data > Make Paths Relative) and submit again',
    );
  }
  if (!report.scene.has_camera) warnings.push(`scene "${report.scene.name}" has no active camera: Blender will not render it`);
  return warnings;
}
