/**
 * How the node (and the CLI's dependency lister) starts Blender: the safe arguments, written
 * once, and the probe that asks a .blend one question by printing one JSON line.
 *
 * Blender reads its arguments left to right: these go before the file, because they decide how
 * it loads; what changes the loaded scene (-o, -F, --python-expr) and the render action come after.
 */
import { runProcess } from '../process/run-process.ts';

/**
 * Headless; no user preferences or add-ons (a farm renders what the file says, not what the
 * machine's user set up); no Python that a .blend carries (uploaded files are not trusted); no
 * audio device.
 */
const SAFE_BLENDER_ARGS: readonly string[] = ['-b', '--factory-startup', '--disable-autoexec', '-noaudio'];

/** Blender's arguments: the safe ones, then the file to open (if any), then `after`. */
export function blenderArgs(blendPath: string | null, after: readonly string[] = []): string[] {
  return [...SAFE_BLENDER_ARGS, ...(blendPath === null ? [] : [blendPath]), ...after];
}

/**
 * A question to a loaded .blend: a --python-expr that prints one line, `PREFIX {json}`, and the
 * reader of that line. The expression can ride along with any Blender run (a render's
 * pythonExprs), so the node learns the answer without starting Blender again.
 */
export interface BlenderProbe<T> {
  /** A one-line --python-expr. */
  expr: string;
  /** The answer from a line the expression printed; undefined for any other line. */
  parse(line: string): T | undefined;
}

/**
 * A probe printing `prefix` and the JSON of `pythonDict` (a Python expression over `bpy` and the
 * scene's render settings `r`); `check` turns the parsed JSON into the answer, or undefined
 * when it does not have the expected shape.
 */
export function jsonLineProbe<T>(prefix: string, pythonDict: string, check: (value: Record<string, unknown>) => T | undefined): BlenderProbe<T> {
  const marker = `${prefix} `;
  return {
    expr: `import bpy, json; r = bpy.context.scene.render; print(${JSON.stringify(marker)} + json.dumps(${pythonDict}), flush=True)`,
    parse(line) {
      if (!line.startsWith(marker)) return undefined;
      try {
        const value: unknown = JSON.parse(line.slice(marker.length));
        return value !== null && typeof value === 'object' ? check(value as Record<string, unknown>) : undefined;
      } catch {
        // Not our JSON after all: treat it as any other line.
        return undefined;
      }
    },
  };
}

/**
 * Opens `blendPath` in Blender (scripts in the file stay off) and answers `probe`'s question.
 * Throws, naming `what` and with Blender's last lines, when Blender printed no answer.
 */
export async function runProbe<T>(
  blender: string,
  blendPath: string,
  probe: BlenderProbe<T>,
  what: string,
  options: { signal?: AbortSignal } = {},
): Promise<T> {
  let found: T | undefined;
  const args = blenderArgs(blendPath, ['--python-exit-code', '1', '--python-expr', probe.expr]);
  const result = await runProcess(blender, args, { signal: options.signal, onLine: (line) => (found ??= probe.parse(line)) });
  if (found === undefined) {
    throw new Error(
      `reading ${what} of ${blendPath}: Blender exited with ${result.exitCode ?? result.signal} and printed none\n${result.tail.slice(-20).join('\n')}`,
    );
  }
  return found;
}
