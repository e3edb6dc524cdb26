#!/usr/bin/env node
// `npm start` after set-up: the master under `wrangler dev` on http://localhost:8000 (persisted
// local D1/R2 in .wrangler/state) and one render node working in .farm/node-local. Ctrl-C stops
// both: the node gets SIGTERM first so it can release its task.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const MASTER = 'http://localhost:8000';
const env = { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: 'false', WRANGLER_SEND_METRICS: 'false' };

function start(name, args) {
  const child = spawn(process.execPath, args, { cwd: root, env, stdio: 'inherit', detached: true });
  child.on('exit', (code, signal) => {
    console.error(`[farm] ${name} exited (${signal ?? code})`);
    if (name === 'master' && !stopping) shutdown('SIGTERM', 1);
  });
  return child;
}

const master = start('master', [join(root, 'node_modules', 'wrangler', 'bin', 'wrangler.js'), 'dev', '--log-level', 'warn', '--var', 'FARM_ALLOW_ANONYMOUS:true']);

async function waitForMaster() {
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`${MASTER}/time`)).ok) return true;
    } catch {
      // Not up yet.
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

let node;
let stopping = false;
async function shutdown(signal, code = 0) {
  if (stopping) return;
  stopping = true;
  const kill = (child, sig) => child?.pid && child.exitCode === null && process.kill(-child.pid, sig);
  kill(node, signal);
  await new Promise((r) => (node && node.exitCode === null ? node.once('exit', r) : r()));
  kill(master, 'SIGTERM');
  setTimeout(() => kill(master, 'SIGKILL'), 3000).unref();
  await new Promise((r) => (master.exitCode === null ? master.once('exit', r) : r()));
  process.exit(code);
}
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));

if (await waitForMaster()) {
  console.error(`[farm] master ready on ${MASTER}; starting one local render node`);
  console.error(`[farm] submit: curl -F blend_file=@scene.blend -F start_frame=1 -F end_frame=10 ${MASTER}/submit_job`);
  node = start('render node', ['--max-semi-space-size=2', join(root, 'worker-node', 'main.ts'), '--master', MASTER, '--name', 'local-1', '--work-dir', join(root, '.farm', 'node-local')]);
} else {
  console.error('[farm] the master did not start within 60 s; see the output above');
  shutdown('SIGTERM', 1);
}
