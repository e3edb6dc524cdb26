/** Temp dirs for tests: each is removed after its test file (the node and e2e projects' setup files). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made = new Set<string>();

/** A new directory under the system's temp dir, `farm-<prefix>-…`, removed after the test file. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `farm-${prefix}-`));
  made.add(dir);
  return dir;
}

/** After a test file: removes the temp dirs it made. */
export function removeTempDirs(): void {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
  made.clear();
}
