#!/usr/bin/env node
// Set-up shared by `npm start`, `npm test`, `npm run dev` and `npm run worker`. Runs on whatever
// Node the machine has (20 here): it installs the project's dependencies, which bring Node 22
// (the `node` package) for wrangler, miniflare and the render node, then applies the local D1
// migrations. Idempotent and quick when nothing changed. (The dashboard is built by wrangler
// itself, before `wrangler dev` and `wrangler deploy`: wrangler.toml [build].)
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const quiet = process.argv.includes('--quiet');
const log = (msg) => quiet || console.error(`[setup] ${msg}`);

function run(cmd, args, opts = {}) {
  const result = spawnSync(cmd, args, { cwd: root, stdio: quiet ? ['ignore', 'ignore', 'inherit'] : 'inherit', ...opts });
  if (result.status !== 0) {
    console.error(`[setup] failed: ${cmd} ${args.join(' ')} (exit ${result.status ?? result.signal})`);
    process.exit(result.status || 1);
  }
}

// 1. Dependencies, re-installed whenever package-lock.json changed since the last install.
const lock = join(root, 'package-lock.json');
const stamp = join(root, 'node_modules', '.farm-setup-stamp');
const lockHash = createHash('sha256').update(readFileSync(lock)).digest('hex');
const node22 = join(root, 'node_modules', '.bin', 'node');
if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== lockHash || !existsSync(node22)) {
  log('installing dependencies (npm ci), including Node 22 from the npm registry');
  run('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error']);
  writeFileSync(stamp, lockHash);
}

// 2. Local D1 schema for `wrangler dev` (persisted in .wrangler/state).
log('applying D1 migrations to the local database');
run(node22, [join(root, 'node_modules', 'wrangler', 'bin', 'wrangler.js'), 'd1', 'migrations', 'apply', 'DB', '--local'], {
  env: { ...process.env, CI: 'true', CLOUDFLARE_CF_FETCH_ENABLED: 'false', WRANGLER_SEND_METRICS: 'false' },
  stdio: ['ignore', 'ignore', 'inherit'],
});
