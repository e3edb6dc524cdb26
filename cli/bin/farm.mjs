#!/usr/bin/env node
/**
 * The `farm` command on the PATH (package.json `bin`). It runs the CLI built to JavaScript
 * (cli/dist/farm.mjs, made by `npm run build:cli`, which npm runs as `prepare` on install, link
 * and pack), so it works on Node 20 from any folder. In a checkout, on a Node that runs
 * TypeScript itself (22.18+), it runs the sources instead, so a stale build never shadows an edit;
 * Node never strips types under node_modules, hence the check.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const source = new URL('../farm.ts', import.meta.url);
const built = new URL('../dist/farm.mjs', import.meta.url);
const runsSource = Boolean(process.features.typescript) && existsSync(source) && !fileURLToPath(source).includes('/node_modules/');
if (!runsSource && !existsSync(built)) {
  process.stderr.write(`farm: ${fileURLToPath(built)} is missing: run \`npm run build:cli\` in ${fileURLToPath(new URL('../..', import.meta.url))}\n`);
  process.exit(1);
}
await import((runsSource ? source : built).href);
