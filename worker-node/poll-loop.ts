/**
 * The node's main loop: register, then claim and run tasks until told to stop. The master being
 * down is never fatal: every call retries with exponential backoff (see master-client.ts).
 */
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { FarmApiError } from '../protocol/http-client.ts';
import type { Device, RegisterWorkerRequest, RegisterWorkerResponse, TaskAssignment, TaskKind } from '../protocol/schemas.ts';
import type { NodeConfig } from './config.ts';
import { BOOT_ID, forgetCredential, loadCredential, loadWorkerId, saveCredential, saveWorkerId } from './identity.ts';
import type { Logger } from './logger.ts';
import type { MasterClient } from './master-client.ts';
import type { TaskRunner } from './task-runner.ts';

/** After an error, wait IDLE_JITTER_MS plus a random share of it so nodes do not retry in step. */
const IDLE_JITTER_MS = 1_000;
/**
 * After an empty long poll, wait a random 0..EMPTY_POLL_JITTER_MS before the next. Long polls of
 * different nodes already end at different times; this only spreads nodes that started together.
 * Kept short because a node is deaf to new work while it waits (pickup within 1 s is a goal).
 */
const EMPTY_POLL_JITTER_MS = 250;

export interface PollLoopDeps {
  config: NodeConfig;
  client: MasterClient;
  log: Logger;
  makeRunner: (workerId: string) => TaskRunner;
  /** CPU and GPUs, shown in the node list (devices.ts); detected once when the node starts. */
  devices?: Device[];
  /**
   * The kinds of task this node runs (render, tile, stitch, and video where ffmpeg is): the
   * master gives tile, stitch and video tasks only to nodes that list them.
   */
  taskKinds?: TaskKind[];
}

/** How long a node whose enrolment token was refused waits before it tries again. */
const ENROL_RETRY_MS = 30_000;

/**
 * Registers and returns the worker id. A node that enrolled before registers with its own
 * credential and keeps its id; one without a credential enrols with the enrolment token and
 * saves the credential the master returns (mode 0600, see identity.ts). A credential the master
 * refuses (revoked, or the master's database was reset) is dropped and the node enrols again;
 * an enrolment token it refuses is logged and tried again every 30 s, since the operator may
 * still be setting tokens up: the node does not exit over it.
 */
export async function register(deps: PollLoopDeps, stop: AbortSignal, reuse = true): Promise<string> {
  const { config, client, log } = deps;
  const info: RegisterWorkerRequest = {
    name: config.name,
    hostname: hostname(),
    blender_version: config.blenderVersion,
    threads: config.threads,
    // Sent even when empty, so tags removed from the node's configuration are removed on the master.
    tags: config.tags ?? [],
    // A restart hands back what the earlier life held (see identity.ts BOOT_ID).
    boot_id: BOOT_ID,
    ...(deps.devices ? { devices: deps.devices } : {}),
    ...(deps.taskKinds ? { task_kinds: deps.taskKinds } : {}),
  };
  const saved = await loadCredential(config.workDir, config.masterUrl);
  client.setCredential(saved?.node_token);
  let known = reuse ? (saved?.worker_id ?? (await loadWorkerId(config.workDir, config.masterUrl))) : undefined;
  for (;;) {
    let response: RegisterWorkerResponse;
    try {
      response = await client.register({ ...info, ...(known ? { worker_id: known } : {}) }, stop);
    } catch (err) {
      if (stop.aborted || !(err instanceof FarmApiError)) throw err;
      if (err.status === 401 && client.hasCredential) {
        log.warn(`the master refused this node's credential (${err.summary}); enrolling again with the enrolment token`);
        client.setCredential(undefined);
        await forgetCredential(config.workDir);
        continue;
      }
      if (err.status === 409 && known) {
        log.warn(`${err.summary}; enrolling as a new node`);
        known = undefined;
        continue;
      }
      if (err.status === 401 || err.status === 403) {
        log.error(
          `enrolment refused: ${err.summary}. Give this node the master's enrolment token with --token or FARM_NODE_TOKEN; ` +
            `trying again in ${ENROL_RETRY_MS / 1000} s`,
        );
        await sleep(ENROL_RETRY_MS, undefined, { signal: stop });
        continue;
      }
      throw err;
    }
    if (response.node_token) {
      client.setCredential(response.node_token);
      await saveCredential(config.workDir, { master: config.masterUrl, worker_id: response.worker_id, node_token: response.node_token });
    }
    await saveWorkerId(config.workDir, config.masterUrl, response.worker_id);
    log.info(`registered with ${config.masterUrl} as ${response.worker_id} (${config.name}, Blender ${config.blenderVersion})`);
    return response.worker_id;
  }
}

/**
 * Claims and runs tasks until `stop` aborts. Resolves once the current task has finished or
 * been released.
 *
 * Tasks overlap by their non-Blender parts: as soon as Blender is done with a task and its frames
 * are uploaded (the master sizes the next chunk from their render times), the next task is
 * claimed while the log and the report of the previous one are still going out, so its blend
 * downloads (and its hot Blender loads the file) in that time instead of after it. At most two
 * tasks are in hand: one rendering, one finishing. Blender itself only ever works on one (the hot
 * Blender serialises renders; a cold task starts its process after the previous one's exited).
 */
export async function pollLoop(deps: PollLoopDeps, stop: AbortSignal): Promise<void> {
  const { config, client, log } = deps;
  let workerId = await register(deps, stop);
  let runner = deps.makeRunner(workerId);
  // The previous task's uploads and report, still running while the next task renders.
  let finishing: Promise<void> = Promise.resolve();
  while (!stop.aborted) {
    let task: TaskAssignment | null;
    try {
      task = await client.getJob(workerId, config.pollWaitMs, stop);
    } catch (err) {
      if (stop.aborted) break;
      if (err instanceof FarmApiError && err.status === 404) {
        // The master no longer knows this node (its database was reset): enrol again.
        log.warn(`the master does not know worker ${workerId}; registering again`);
        workerId = await register(deps, stop, false);
        runner = deps.makeRunner(workerId);
        continue;
      }
      if (err instanceof FarmApiError && err.status === 401) {
        // The credential was revoked, or the master's database was reset: enrol again.
        log.warn(`the master refused this node's credential (${err.summary}); enrolling again`);
        client.setCredential(undefined);
        await forgetCredential(config.workDir);
        workerId = await register(deps, stop);
        runner = deps.makeRunner(workerId);
        continue;
      }
      log.error(`asking for work: ${(err as Error).message}`);
      await sleep(IDLE_JITTER_MS + Math.random() * IDLE_JITTER_MS, undefined, { signal: stop }).catch(() => {});
      continue;
    }
    if (!task) {
      await sleep(Math.random() * EMPTY_POLL_JITTER_MS, undefined, { signal: stop }).catch(() => {});
      continue;
    }
    const claimed = task;
    let framesDone!: () => void;
    const rendered = new Promise<void>((resolve) => (framesDone = resolve));
    const whole = runner.run(claimed, stop, { onFramesDone: framesDone }).then(
      () => {},
      async (err) => {
        // A bug or an unexpected master answer: the lease runs out and another node renders it.
        // The pause holds back the claim after next, so a failing runner cannot spin.
        log.error(`task ${claimed.task_id}: ${(err as Error).stack ?? err}`);
        await sleep(IDLE_JITTER_MS, undefined, { signal: stop }).catch(() => {});
      },
    );
    await Promise.race([rendered, whole]);
    // Never more than one task finishing behind the one just rendered.
    await finishing;
    finishing = whole;
  }
  await finishing;
}
