#!/usr/bin/env node
// Builds the dashboard into dashboard/dist/, the Worker's static assets (wrangler.toml [assets]):
// the TypeScript of dashboard/src/ bundled by esbuild into dashboard.js, next to the files of
// dashboard/public/ (the HTML page, the style sheet, the _headers rules). Run by wrangler itself
// before `wrangler dev` and `wrangler deploy` (wrangler.toml [build]), so `npm start`, `npm run
// dev`, `npm test` (its bundle check and end-to-end masters) and a deploy each build it first.
// Plain JavaScript, so Node 20 runs it.
//
// Several `wrangler dev` may start at once (the end-to-end tests start masters in parallel): a file
// is written only when its content changed, through a temporary file renamed over it, so none of
// them ever reads half a file, and wrangler's watcher of the assets sees no change when none was.
import { build } from 'esbuild';
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dashboard = join(dirname(fileURLToPath(import.meta.url)), '..', 'dashboard');
const out = join(dashboard, 'dist');

/** Writes `content` to `path` unless it already holds exactly that. */
function put(path, content) {
  try {
    if (readFileSync(path).equals(content)) return;
  } catch {
    // Not there yet.
  }
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, content);
  renameSync(temp, path);
}

const result = await build({
  entryPoints: [join(dashboard, 'src', 'main.ts')],
  bundle: true,
  format: 'iife',
  // What the browsers of the last few years run; no polyfills.
  target: 'es2022',
  platform: 'browser',
  charset: 'utf8',
  legalComments: 'none',
  write: false,
  outfile: join(out, 'dashboard.js'),
  logLevel: 'warning',
});
mkdirSync(out, { recursive: true });
for (const file of result.outputFiles) put(file.path, Buffer.from(file.contents));
for (const name of readdirSync(join(dashboard, 'public'))) put(join(out, name), readFileSync(join(dashboard, 'public', name)));
