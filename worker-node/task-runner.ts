/**
 * Runs one claimed task: fetch the blend, render the frames with Blender, upload each frame as
 * soon as Blender saves it (while the next one renders), keep the lease alive, then report.
 *
 * Outcomes: `completed` once every frame is uploaded; `failed` with Blender's classified error
 * and log tail; `released` when the node is shutting down; nothing at all when the master says
 * the lease is gone (another node has the frames now).
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { TaskAssignment } from '../protocol/schemas.ts';
import { classifyBlenderFailure } from './blender/classify-failure.ts';
import { parseBlenderLine } from './blender/output-parser.ts';
import { buildRenderArgs } from './blender/render-args.ts';
import type { BlendCache } from './blend-cache.ts';
import type { NodeConfig } from './config.ts';
import { MasterError, type MasterClient } from './master-client.ts';
import { formatCommandLine, runProcess } from './process/run-process.ts';
import type { Logger } from './logger.ts';

const ID = /^[0-9a-f-]{36}$/;

export type TaskOutcome = 'completed' | 'failed' | 'released' | 'lease_lost' | 'aborted';

export interface TaskRunnerDeps {
  config: NodeConfig;
  client: MasterClient;
  cache: BlendCache;
  workerId: string;
  log: Logger;
}

/** A 409 or 404 about a task means the master gave it to someone else or forgot it. */
const leaseGone = (err: unknown) => err instanceof MasterError && (err.status === 409 || err.status === 404);

export class TaskRunner {
  private readonly deps: TaskRunnerDeps;
  constructor(deps: TaskRunnerDeps) {
    this.deps = deps;
  }

  /**
   * Renders `task`. `stop` aborts the render (shutdown); the task is then released, not failed.
   */
  async run(task: TaskAssignment, stop: AbortSignal): Promise<TaskOutcome> {
    const { config, client, cache, workerId, log } = this.deps;
    if (!ID.test(task.task_id) || !ID.test(task.lease_id)) throw new Error(`refusing task with malformed ids from the master`);
    const lease = { worker_id: workerId, task_id: task.task_id, lease_id: task.lease_id };
    const label = `job ${task.job_name} frames ${task.frames[0]}-${task.frames[task.frames.length - 1]} (task ${task.task_id.slice(0, 8)}, attempt ${task.attempt})`;
    log.info(`claimed ${label}`);

    const outDir = join(config.workDir, 'renders', task.task_id);
    const logPath = join(config.workDir, 'logs', `${task.task_id}-${task.attempt}.log`);
    await rm(outDir, { recursive: true, force: true });
    await mkdir(outDir, { recursive: true });
    await mkdir(join(config.workDir, 'logs'), { recursive: true });

    const render = new AbortController();
    let lost = false;
    const loseLease = (why: unknown) => {
      if (!lost) log.warn(`lease on ${label} lost (${(why as Error).message}); dropping the task`);
      lost = true;
      render.abort();
    };
    const onStop = () => render.abort();
    stop.addEventListener('abort', onStop);

    let currentFrame: number | undefined;
    let peakMemMb = 0;
    // Renew well before expiry; a renewal that fails transiently is retried inside the client.
    const renewEveryMs = Math.max(1_000, Math.min(15_000, Math.floor(task.lease_ms / 3)));
    const heartbeat = setInterval(() => {
      client
        .updateTask({ ...lease, status: 'running', current_frame: currentFrame, peak_mem_mb: peakMemMb || undefined })
        .then((r) => {
          if (r.abort) {
            log.warn(`the master canceled ${label}`);
            render.abort();
          }
        })
        .catch((err) => (leaseGone(err) ? loseLease(err) : log.warn(`renewing lease: ${(err as Error).message}`)));
    }, renewEveryMs);

    const uploaded = new Set<number>();
    let uploads: Promise<void> = Promise.resolve();
    let uploadError: Error | null = null;
    try {
      let blendPath: string;
      try {
        blendPath = await cache.ensure(task.blend_file, task.blend_sha256);
      } catch (err) {
        if (leaseGone(err)) return (loseLease(err), 'lease_lost');
        if (stop.aborted) return await this.release(lease, label);
        return await this.fail(lease, label, `downloading the blend file: ${(err as Error).message}`, 'download_failed', '', logPath);
      }

      // A running update right away tells the dashboard the task started and checks the lease.
      try {
        await client.updateTask({ ...lease, status: 'running', message: 'rendering' });
      } catch (err) {
        if (leaseGone(err)) return (loseLease(err), 'lease_lost');
        throw err;
      }

      const args = buildRenderArgs({
        blendPath,
        outputPattern: join(outDir, 'frame_######'),
        frames: task.frames,
        threads: config.threads,
      });
      const wanted = new Set(task.frames);
      let frameStartedAt = Date.now();
      const result = await runProcess(config.blender, args, {
        cwd: outDir,
        logPath,
        signal: render.signal,
        killGraceMs: 5_000,
        onStart: () => log.info(`running ${formatCommandLine(config.blender, args)}`),
        onLine: (line) => {
          const event = parseBlenderLine(line);
          if (!event) return;
          if (event.kind === 'progress') {
            if (event.frame !== currentFrame) {
              currentFrame = event.frame;
              frameStartedAt = Date.now();
            }
            if (event.peakMb) peakMemMb = Math.max(peakMemMb, event.peakMb);
          } else if (event.kind === 'saved') {
            const frame = event.frame ?? currentFrame;
            if (frame === undefined || !wanted.has(frame) || !event.path.startsWith(outDir)) return;
            const renderMs = Date.now() - frameStartedAt;
            frameStartedAt = Date.now();
            // Upload while Blender renders the next frame; uploads stay in order, one at a time.
            uploads = uploads.then(async () => {
              if (uploadError || lost) return;
              try {
                await client.uploadFrame({ workerId, taskId: task.task_id, leaseId: task.lease_id, frame, path: event.path, renderMs });
                uploaded.add(frame);
                await rm(event.path, { force: true });
              } catch (err) {
                if (leaseGone(err)) loseLease(err);
                else uploadError = err as Error;
              }
            });
          }
        },
      });
      await uploads;
      if (lost) return 'lease_lost';
      if (render.signal.aborted && stop.aborted) return await this.release(lease, label);
      if (render.signal.aborted) return 'aborted';
      const tail = result.tail.join('\n');
      if (uploadError) {
        return await this.fail(lease, label, `uploading frames: ${(uploadError as Error).message}`, 'upload_failed', tail, logPath);
      }
      const missing = task.frames.filter((f) => !uploaded.has(f));
      if (result.exitCode !== 0 || result.signal || missing.length > 0) {
        const failure = classifyBlenderFailure({ exitCode: result.exitCode, signal: result.signal, tail: result.tail });
        const message =
          result.exitCode === 0 && !result.signal
            ? `Blender exited 0 but did not save frame(s) ${missing.slice(0, 10).join(', ')}: ${failure.message}`
            : failure.message;
        return await this.fail(lease, label, message, result.exitCode === 0 && failure.reason === 'unknown' ? 'missing_output' : failure.reason, tail, logPath);
      }
      await this.uploadLog(lease, logPath);
      await client.updateTask({ ...lease, status: 'completed', message: `rendered ${task.frames.length} frame(s) in ${(result.durationMs / 1000).toFixed(1)} s`, peak_mem_mb: peakMemMb || undefined });
      log.info(`completed ${label} in ${(result.durationMs / 1000).toFixed(1)} s`);
      return 'completed';
    } catch (err) {
      if (leaseGone(err)) return (loseLease(err), 'lease_lost');
      throw err;
    } finally {
      clearInterval(heartbeat);
      stop.removeEventListener('abort', onStop);
      await rm(outDir, { recursive: true, force: true }).catch(() => {});
    }
  }

  private async uploadLog(lease: { worker_id: string; task_id: string; lease_id: string }, logPath: string): Promise<void> {
    try {
      await this.deps.client.uploadLog({ workerId: lease.worker_id, taskId: lease.task_id, leaseId: lease.lease_id, path: logPath });
    } catch (err) {
      // A missing log must not lose the frames: report the task anyway.
      this.deps.log.warn(`uploading the log of task ${lease.task_id}: ${(err as Error).message}`);
    }
  }

  private async fail(
    lease: { worker_id: string; task_id: string; lease_id: string },
    label: string,
    message: string,
    reason: string,
    tail: string,
    logPath: string,
  ): Promise<TaskOutcome> {
    this.deps.log.error(`failed ${label}: ${message}`);
    await this.uploadLog(lease, logPath);
    try {
      await this.deps.client.updateTask({ ...lease, status: 'failed', message, failure_reason: reason.slice(0, 64), log_tail: tail.slice(-60_000) });
    } catch (err) {
      if (!leaseGone(err)) throw err;
    }
    return 'failed';
  }

  private async release(lease: { worker_id: string; task_id: string; lease_id: string }, label: string): Promise<TaskOutcome> {
    try {
      await this.deps.client.updateTask({ ...lease, status: 'released', message: 'the node is shutting down' });
      this.deps.log.info(`released ${label}`);
    } catch (err) {
      this.deps.log.warn(`releasing ${label}: ${(err as Error).message}`);
    }
    return 'released';
  }
}
