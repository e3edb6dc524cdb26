#!/usr/bin/env node
// `npm start` after set-up: the master under `wrangler dev` on http://localhost:8000 (persisted
// local D1/R2 in .wrangler/state) and one render node working in .farm/node-local. Ctrl-C stops
// both: the node gets SIGTERM first so it can release its task.
//
// Plain `npm start` runs the master open (FARM_ALLOW_ANONYMOUS) and serves this machine only
// (the master refuses any Host but a loopback one). `npm start -- --lan` serves the studio's
// network instead, closed: every request needs a token. The tokens are made once, kept in
// .farm/lan-tokens.env (git-ignored, mode 0600, passed to wrangler with --env-file so they stay
// off the process list), and printed at each start with how to use them.
//
// Options: --lan; --port N (8000); --persist-to DIR (.wrangler/state, as wrangler); --farm-dir DIR
// (.farm: the tokens file and the local node's work directory).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: options } = parseArgs({
  options: {
    lan: { type: 'boolean', default: false },
    port: { type: 'string', default: '8000' },
    'persist-to': { type: 'string' },
    'farm-dir': { type: 'string', default: join(root, '.farm') },
  },
});
const port = Number(options.port);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`[farm] --port must be a TCP port (1-65535), got ${options.port}`);
  process.exit(2);
}
const farmDir = resolve(options['farm-dir']);
const MASTER = `http://localhost:${port}`;
const env = { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: 'false', WRANGLER_SEND_METRICS: 'false' };

/**
 * The LAN tokens, made on the first `--lan` start and kept: a restart must not lock out the
 * nodes and people already using them. Random 256-bit values, prefixed so a leaked one says what
 * it opens.
 */
function lanTokens() {
  const file = join(farmDir, 'lan-tokens.env');
  const kept = existsSync(file)
    ? Object.fromEntries(
        readFileSync(file, 'utf8')
          .split('\n')
          .map((line) => /^([A-Z_]+)=(.*)$/.exec(line.trim()))
          .filter(Boolean)
          .map((m) => [m[1], m[2]]),
      )
    : {};
  const tokens = {
    submit: kept.FARM_SUBMIT_TOKEN || `farm_submit_${randomBytes(32).toString('base64url')}`,
    node: kept.FARM_NODE_TOKEN || `farm_enrol_${randomBytes(32).toString('base64url')}`,
  };
  mkdirSync(farmDir, { recursive: true });
  // FARM_ALLOW_ANONYMOUS=false here, last of the env files, wins over a .dev.vars that says otherwise.
  writeFileSync(
    file,
    `# Made by npm start -- --lan; delete this file to make new tokens (docs/operations.md).\n` +
      `FARM_ALLOW_ANONYMOUS=false\nFARM_SUBMIT_TOKEN=${tokens.submit}\nFARM_NODE_TOKEN=${tokens.node}\n`,
    { mode: 0o600 },
  );
  return { ...tokens, file };
}

/** This machine's LAN addresses, for the URLs printed. */
function lanAddresses() {
  const found = Object.values(networkInterfaces())
    .flat()
    .filter((a) => a && a.family === 'IPv4' && !a.internal)
    .map((a) => a.address);
  return found.length ? found : ['<this-machine>'];
}

function start(name, args, extraEnv = {}) {
  const child = spawn(process.execPath, args, { cwd: root, env: { ...env, ...extraEnv }, stdio: 'inherit', detached: true });
  child.on('exit', (code, signal) => {
    console.error(`[farm] ${name} exited (${signal ?? code})`);
    if (name === 'master' && !stopping) shutdown('SIGTERM', 1);
  });
  return child;
}

const wranglerArgs = [join(root, 'node_modules', 'wrangler', 'bin', 'wrangler.js'), 'dev', '--log-level', 'warn', '--port', String(port)];
if (options['persist-to']) wranglerArgs.push('--persist-to', resolve(options['persist-to']));
const tokens = options.lan ? lanTokens() : null;
if (tokens) {
  // --env-file replaces wrangler's own reading of .dev.vars: pass it first so its settings still apply.
  const devVars = join(root, '.dev.vars');
  wranglerArgs.push('--ip', '0.0.0.0', ...(existsSync(devVars) ? ['--env-file', devVars] : []), '--env-file', tokens.file);
} else {
  wranglerArgs.push('--ip', '127.0.0.1', '--var', 'FARM_ALLOW_ANONYMOUS:true');
}
const master = start('master', wranglerArgs);

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

/** What people and nodes on the network need, printed once per start. */
function printLanUse() {
  const url = `http://${lanAddresses()[0]}:${port}`;
  const lines = [
    `master ready on ${lanAddresses()
      .map((a) => `http://${a}:${port}`)
      .join(', ')} (and ${MASTER}), for the studio's network: every request needs a token`,
    `tokens (kept in ${relative(process.cwd(), tokens.file) || tokens.file}; delete it and restart for new ones):`,
    `  submitter token: ${tokens.submit}`,
    `    curl -H "Authorization: Bearer ${tokens.submit}" -F blend_file=@scene.blend -F start_frame=1 -F end_frame=10 ${url}/submit_job`,
    `    FARM_MASTER_URL=${url} FARM_TOKEN=${tokens.submit} npm run farm -- list`,
    `    dashboard: ${url}/ (paste the submitter token under Token)`,
    `  node enrolment token: ${tokens.node}`,
    `    on each render node: FARM_NODE_TOKEN=${tokens.node} npm run worker -- --master ${url}`,
    `starting one local render node, enrolled with the node token`,
  ];
  for (const line of lines) console.error(`[farm] ${line}`);
}

if (await waitForMaster()) {
  if (tokens) printLanUse();
  else {
    console.error(`[farm] master ready on ${MASTER} (this machine only; npm start -- --lan serves the network, with tokens); starting one local render node`);
    console.error(`[farm] submit: curl -F blend_file=@scene.blend -F start_frame=1 -F end_frame=10 ${MASTER}/submit_job`);
  }
  node = start(
    'render node',
    ['--max-semi-space-size=2', join(root, 'worker-node', 'main.ts'), '--master', MASTER, '--name', 'local-1', '--work-dir', join(farmDir, 'node-local')],
    // The enrolment token goes by environment (worker-node/config.ts), not on the process list.
    tokens ? { FARM_NODE_TOKEN: tokens.node } : {},
  );
} else {
  console.error('[farm] the master did not start within 60 s; see the output above');
  shutdown('SIGTERM', 1);
}
