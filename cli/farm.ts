#!/usr/bin/env node
/**
 * `farm`: the command-line client of the render farm (`npx farm ...` or `npm run farm -- ...`).
 * Each command lives in its own module under commands/ and registers itself on the program.
 */
import { Command } from 'commander';

const program = new Command('farm')
  .description('Submit Blender jobs to the render farm, watch them and fetch the frames.')
  .option('--master <url>', 'the master (env FARM_MASTER_URL)', process.env.FARM_MASTER_URL ?? 'http://localhost:8000')
  .option('--token <token>', 'API token (env FARM_TOKEN)', process.env.FARM_TOKEN)
  .showHelpAfterError();

// Command modules: each exports register(program).
const modules: { register: (program: Command) => void }[] = [];
for (const module of modules) module.register(program);

await program.parseAsync(process.argv);
