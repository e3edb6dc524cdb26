/** The shipped systemd unit is one systemd accepts, pointing at files that exist in this repo. */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const hasSystemdAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

describe('worker-node/farm-node.service', () => {
  const unit = readFileSync(join(ROOT, 'worker-node', 'farm-node.service'), 'utf8');

  it('restarts on failure, reads the master URL and token from an env file, and stops with SIGTERM', () => {
    expect(unit).toMatch(/^Restart=on-failure$/m);
    expect(unit).toMatch(/^EnvironmentFile=\/etc\/farm-node\.env$/m);
    expect(unit).toMatch(/^KillSignal=SIGTERM$/m);
    expect(unit).toMatch(/^ExecStart=\S+\/node --max-semi-space-size=2 \S+\/worker-node\/main\.ts$/m);
  });

  it.runIf(hasSystemdAnalyze)('passes systemd-analyze verify when installed at this checkout', () => {
    const dir = tempDir('unit');
    const path = join(dir, 'farm-node.service');
    writeFileSync(path, unit.replaceAll('/opt/blender-farm', ROOT));
    const result = spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8' });
    expect(result.stderr + result.stdout).not.toMatch(/not executable|Invalid|Unknown|Failed/i);
    expect(result.status).toBe(0);
  });
});
