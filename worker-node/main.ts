#!/usr/bin/env node
/**
 * The render node daemon: `npm run worker -- --master URL`. Wires configuration, the master
 * client, the blend cache and the task runner together, and handles shutdown:
 * SIGTERM/SIGINT stop claiming work, give the current task `--grace-ms` to finish, then stop
 * Blender (its whole process group) and release the task's lease. A second signal stops at once.
 */
import { BlendCache } from './blend-cache.ts';
import { HotBlender } from './blender/hot-blender.ts';
import { ConfigError, loadConfig, USAGE } from './config.ts';
import { createLogger } from './logger.ts';
import { MasterClient } from './master-client.ts';
import { pollLoop } from './poll-loop.ts';
import { detectDevices } from './devices.ts';
import { FramePreviews } from './frame-preview.ts';
import { TaskRunner } from './task-runner.ts';

/** A hot Blender left without work this long is stopped, so an idle node gives its memory back. */
const HOT_IDLE_MS = 60_000;

async function main(): Promise<number> {
  let config;
  try {
    config = await loadConfig(process.argv.slice(2));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`farm node: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (config === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const log = createLogger(config.name);
  const stopClaiming = new AbortController(); // ends the poll loop
  const stopRender = new AbortController(); // aborts the task in hand
  const client = new MasterClient({
    baseUrl: config.masterUrl,
    enrolmentToken: config.token,
    onRetry: (what, error, delayMs) => log.warn(`${what}: ${(error as Error).message}; retrying in ${Math.round(delayMs)} ms`),
  });

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      log.info(`${signal}: no new work; the current task has ${config.graceMs} ms to finish`);
      stopClaiming.abort();
      setTimeout(() => stopRender.abort(), config.graceMs).unref();
    } else {
      log.info(`${signal} again: stopping now`);
      stopRender.abort();
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  const cache = new BlendCache(config.workDir, client);
  const hot = config.hot
    ? new HotBlender({
        blender: config.blender,
        threads: config.threads,
        maxFrames: config.hotMaxFrames,
        maxMemMb: config.hotMaxMemMb,
        idleMs: HOT_IDLE_MS,
        log,
      })
    : undefined;
  const previews = new FramePreviews({ client, log, blender: config.blender });
  const devices = await detectDevices(config.blender, (message) => log.warn(message));
  log.info(`devices: ${devices.map((d) => `${d.type} ${d.name}`).join('; ')}`);
  const deps = {
    config,
    client,
    log,
    devices,
    makeRunner: (workerId: string) => new TaskRunner({ config, client, cache, workerId, log, hot, previews }),
  };
  // The poll loop watches stopClaiming; tasks watch stopRender, so a task may finish in grace.
  const loop = pollLoop({ ...deps, makeRunner: (id) => withStopSignal(deps.makeRunner(id), stopRender.signal) }, stopClaiming.signal);
  try {
    await loop;
  } catch (err) {
    if (!stopClaiming.signal.aborted) throw err;
  }
  await hot?.dispose().catch(() => {});
  await client.close().catch(() => {});
  log.info('stopped');
  return 0;
}

/** Makes the runner abort on the render signal rather than on the loop's. */
function withStopSignal(runner: TaskRunner, renderStop: AbortSignal): TaskRunner {
  const run = runner.run.bind(runner);
  runner.run = (task, _stop, hooks) => run(task, renderStop, hooks);
  return runner;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`farm node: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
