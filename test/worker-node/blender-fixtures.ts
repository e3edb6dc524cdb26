/**
 * Real Blender 3.4.1 console logs in test/worker-node/fixtures/, captured with stdout and
 * stderr merged. They are .txt rather than .log because the repository ignores *.log.
 */
import { readFileSync } from 'node:fs';

/** A fixture's lines, as runProcess would deliver them to onLine. */
export function fixtureLines(name: string): string[] {
  const text = readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.at(-1) === '') lines.pop();
  return lines;
}
