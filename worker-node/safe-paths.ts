/**
 * Checks on names and paths that come from outside the node (the master, Blender's output)
 * before the node touches its disk with them or writes them to its log.
 */
import { isAbsolute, relative, resolve } from 'node:path';

/**
 * Whether `path` lies inside `dir` (not `dir` itself). A plain prefix test would let
 * `/w/renders/abc-evil/x` pass for `/w/renders/abc`, and `..` segments walk out of it.
 */
export function isInsideDir(dir: string, path: string): boolean {
  const rel = relative(resolve(dir), resolve(path));
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

/**
 * Text from the master (a job name) made safe for one log line: control characters, which could
 * forge log lines or move the terminal's cursor, become spaces, and the length is capped.
 */
export function printable(text: string, max = 120): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, ' ');
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}
