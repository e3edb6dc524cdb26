#!/usr/bin/env node
/**
 * `farm`: the command-line client of the render farm (`npx farm ...` or `npm run farm -- ...`).
 * Each command lives in its own module under commands/ and registers itself on the program.
 */
import { Command, CommanderError } from 'commander';
import * as submitCommand from './commands/submit.ts';
import * as controlCommands from './commands/control.ts';
import * as downloadCommand from './commands/download.ts';
import * as listCommand from './commands/list.ts';
import * as logsCommand from './commands/logs.ts';
import * as nodesCommands from './commands/nodes.ts';
import * as statusCommands from './commands/status.ts';
import { EXIT } from './exit-codes.ts';

const program = new Command('farm')
  .description('Submit Blender jobs to the render farm, watch them and fetch the frames.')
  .option('--master <url>', 'the master (env FARM_MASTER_URL)', process.env.FARM_MASTER_URL ?? 'http://localhost:8000')
  .option('--token <token>', 'API token (env FARM_TOKEN)', process.env.FARM_TOKEN)
  .showHelpAfterError()
  // Usage errors throw instead of exiting, so they get exit status 2 (see docs/cli.md, The `farm` CLI).
  .exitOverride();

// Command modules: each exports register(program).
const modules: { register: (program: Command) => void }[] = [
  submitCommand,
  statusCommands,
  listCommand,
  downloadCommand,
  controlCommands,
  logsCommand,
  nodesCommands,
];
for (const module of modules) module.register(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // Commander already printed the problem (or the help, or the version, with exit code 0).
  if (!(err instanceof CommanderError)) throw err;
  process.exitCode = err.exitCode === 0 ? EXIT.ok : EXIT.usage;
}
