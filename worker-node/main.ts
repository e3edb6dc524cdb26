#!/usr/bin/env node
/**
 * The render node daemon: `npm run worker -- --master URL`. Wires configuration, the render
 * slots (one per GPU, see node-slots.ts) and the shared blend cache together, and handles shutdown:
 * SIGTERM/SIGINT stop claiming work, give the current task `--grace-ms` to finish, then stop
 * Blender (its whole process group) and release the task's lease. A second signal stops at once.
 */
import type { TaskKind } from '../protocol/schemas.ts';
import { BlendCache } from './blend-cache.ts';
import { SettingError } from '../protocol/settings.ts';
import { loadConfig, USAGE, type NodeConfig } from './config.ts';
import { detectGpus } from './devices.ts';
import { createLogger } from './logger.ts';
import { planNodeSlots, runNodeSlot } from './node-slots.ts';
import { hasFfmpeg } from './post/preview-video.ts';

async function main(): Promise<number> {
  let config: NodeConfig | 'help';
  try {
    config = await loadConfig(process.argv.slice(2));
  } catch (err) {
    // ConfigError is one too: a setting the node cannot run with.
    if (err instanceof SettingError) {
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
  const stopClaiming = new AbortController(); // ends the poll loops
  const stopRender = new AbortController(); // aborts the tasks in hand

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

  const [report, ffmpeg] = await Promise.all([detectGpus(config.blender, (message) => log.warn(message)), hasFfmpeg()]);
  // Tiles and stitching need only Blender; a preview video needs ffmpeg with libx264.
  const taskKinds: TaskKind[] = ['render', 'tile', 'stitch', ...(ffmpeg ? (['video'] as const) : [])];
  const slots = planNodeSlots(config, report);
  log.info(
    `task kinds: ${taskKinds.join(', ')}${ffmpeg ? '' : ' (no ffmpeg with libx264: no preview videos)'}${config.tags.length ? `; tags: ${config.tags.join(', ')}` : ''}`,
  );
  for (const slot of slots)
    log.info(`${slots.length > 1 ? `slot ${slot.name}: ` : ''}${slot.label}; devices: ${slot.devices.map((d) => `${d.type} ${d.name}`).join('; ')}`);

  // One cache for every slot: a blend two slots need is downloaded once.
  const cache = new BlendCache(config.workDir, undefined, undefined, config.cacheBytes);
  await Promise.all(
    slots.map((slot) =>
      runNodeSlot(slot, {
        config,
        cache,
        taskKinds,
        log: slots.length > 1 ? createLogger(slot.name) : log,
        stopClaiming: stopClaiming.signal,
        stopRender: stopRender.signal,
      }),
    ),
  );
  log.info('stopped');
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`farm node: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
