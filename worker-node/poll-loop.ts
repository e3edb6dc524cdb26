/**
 * The node's main loop: register, then claim and run tasks until told to stop. The master being
 * down is never fatal: every call retries with exponential backoff (see master-client.ts).
 */
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TaskAssignment } from '../protocol/schemas.ts';
import type { NodeConfig } from './config.ts';
import { loadWorkerId, saveWorkerId } from './identity.ts';
import type { Logger } from './logger.ts';
import { MasterError, type MasterClient } from './master-client.ts';
import type { TaskRunner } from './task-runner.ts';

/** After an empty long poll, wait a random 0..IDLE_JITTER_MS so idle nodes do not poll in step. */
const IDLE_JITTER_MS = 1_000;

export interface PollLoopDeps {
  config: NodeConfig;
  client: MasterClient;
  log: Logger;
  makeRunner: (workerId: string) => TaskRunner;
}

/** Registers (keeping the id saved in the work dir) and returns the worker id. */
export async function register(deps: PollLoopDeps, stop: AbortSignal, reuse = true): Promise<string> {
  const { config, client, log } = deps;
  const known = reuse ? await loadWorkerId(config.workDir, config.masterUrl) : undefined;
  const response = await client.register({
    name: config.name,
    hostname: hostname(),
    blender_version: config.blenderVersion,
    threads: config.threads,
    ...(known ? { worker_id: known } : {}),
  }, stop);
  await saveWorkerId(config.workDir, config.masterUrl, response.worker_id);
  log.info(`registered with ${config.masterUrl} as ${response.worker_id} (${config.name}, Blender ${config.blenderVersion})`);
  return response.worker_id;
}

/**
 * Claims and runs tasks until `stop` aborts. Resolves once the current task has finished or
 * been released.
 */
export async function pollLoop(deps: PollLoopDeps, stop: AbortSignal): Promise<void> {
  const { config, client, log } = deps;
  let workerId = await register(deps, stop);
  let runner = deps.makeRunner(workerId);
  while (!stop.aborted) {
    let task: TaskAssignment | null;
    try {
      task = await client.getJob(workerId, config.pollWaitMs, stop);
    } catch (err) {
      if (stop.aborted) break;
      if (err instanceof MasterError && err.status === 404) {
        // The master no longer knows this node (its database was reset): enrol again.
        log.warn(`the master does not know worker ${workerId}; registering again`);
        workerId = await register(deps, stop, false);
        runner = deps.makeRunner(workerId);
        continue;
      }
      log.error(`asking for work: ${(err as Error).message}`);
      await sleep(IDLE_JITTER_MS + Math.random() * IDLE_JITTER_MS, undefined, { signal: stop }).catch(() => {});
      continue;
    }
    if (!task) {
      await sleep(Math.random() * IDLE_JITTER_MS, undefined, { signal: stop }).catch(() => {});
      continue;
    }
    try {
      await runner.run(task, stop);
    } catch (err) {
      // A bug or an unexpected master answer: the lease runs out and another node renders it.
      log.error(`task ${task.task_id}: ${(err as Error).stack ?? err}`);
      await sleep(IDLE_JITTER_MS, undefined, { signal: stop }).catch(() => {});
    }
  }
}
