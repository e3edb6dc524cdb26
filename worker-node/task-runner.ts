/**
 * Runs one claimed task: fetch the blend, render the frames with Blender, upload each frame as
 * soon as Blender saves it (while the next one renders), keep the lease alive, then report.
 *
 * Outcomes: `completed` once every frame is uploaded; `failed` with Blender's classified error
 * and log tail; `released` when the node is shutting down; nothing at all when the master says
 * the lease is gone (another node has the frames now).
 */
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { TaskAssignment } from '../protocol/schemas.ts';
import { classifyBlenderFailure, type BlenderFailure } from './blender/classify-failure.ts';
import { HotBlenderError, type HotBlender } from './blender/hot-blender.ts';
import { MissingFiles, REPORT_MISSING_FILES_EXPR } from './blender/missing-files.ts';
import { parseBlenderLine } from './blender/output-parser.ts';
import { buildRenderArgs } from './blender/render-args.ts';
import type { BlendCache } from './blend-cache.ts';
import type { FramePreviews } from './frame-preview.ts';
import type { NodeConfig } from './config.ts';
import { MasterError, type MasterClient } from './master-client.ts';
import { formatCommandLine, runProcess } from './process/run-process.ts';
import type { Logger } from './logger.ts';
import { isInsideDir, printable } from './safe-paths.ts';

const ID = /^[0-9a-f-]{36}$/;

export type TaskOutcome = 'completed' | 'failed' | 'released' | 'lease_lost' | 'aborted';

export interface TaskRunnerDeps {
  config: NodeConfig;
  client: MasterClient;
  cache: BlendCache;
  workerId: string;
  log: Logger;
  /** Renders in one long-lived Blender per job when given (the default); else one process per task. */
  hot?: HotBlender;
  /** Makes and uploads a small preview of each uploaded frame for the dashboard (frame-preview.ts). */
  previews?: FramePreviews;
}

export interface RunHooks {
  /**
   * Called once Blender is done with the task and its frames are uploaded (or it failed, or had
   * nothing to render), while the log and the report may still be in flight: the moment the poll
   * loop can claim the next task and start fetching its blend. Not earlier: the master sizes the
   * next chunk from the frame times that come with the uploads.
   */
  onFramesDone?: () => void;
}

/** How a task's render went, whichever way Blender was run. */
interface RenderOutcome {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Blender's last output lines. */
  tail: string[];
  durationMs: number;
  /** Set when the renderer already knows why it failed. */
  failure?: BlenderFailure;
}

/** What the renderers report back to run(): frames started and saved, and every output line. */
interface RenderHooks {
  onLine: (line: string) => void;
  onFrameStart: (frame: number) => void;
  onSaved: (frame: number, path: string, renderMs: number) => void;
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
  async run(task: TaskAssignment, stop: AbortSignal, hooks: RunHooks = {}): Promise<TaskOutcome> {
    let framesDone = false;
    const markFramesDone = () => {
      if (framesDone) return;
      framesDone = true;
      hooks.onFramesDone?.();
    };
    try {
      return await this.runTask(task, stop, markFramesDone);
    } finally {
      markFramesDone();
    }
  }

  private async runTask(task: TaskAssignment, stop: AbortSignal, markFramesDone: () => void): Promise<TaskOutcome> {
    const { config, client, cache, workerId, log } = this.deps;
    if (!ID.test(task.task_id) || !ID.test(task.lease_id)) throw new Error(`refusing task with malformed ids from the master`);
    const lease = { worker_id: workerId, task_id: task.task_id, lease_id: task.lease_id };
    const label = `job ${printable(task.job_name)} frames ${task.frames[0]}-${task.frames[task.frames.length - 1]} (task ${task.task_id.slice(0, 8)}, attempt ${task.attempt})`;
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
    // Missing textures and libraries Blender reported; sent with renewals and the final report.
    let missingFiles: MissingFiles | null = null;
    // Renew well before expiry; a renewal that fails transiently is retried inside the client.
    const renewEveryMs = Math.max(1_000, Math.min(15_000, Math.floor(task.lease_ms / 3)));
    const heartbeat = setInterval(() => {
      const warnings = missingFiles?.take() ?? [];
      client
        .updateTask({ ...lease, status: 'running', current_frame: currentFrame, peak_mem_mb: peakMemMb || undefined, ...(warnings.length ? { warnings } : {}) })
        .then((r) => {
          if (r.abort) {
            log.warn(`the master canceled ${label}`);
            render.abort();
          }
        })
        .catch((err) => {
          missingFiles?.unsend(warnings);
          if (leaseGone(err)) loseLease(err);
          else log.warn(`renewing lease: ${(err as Error).message}`);
        });
    }, renewEveryMs);

    const uploaded = new Set<number>();
    let uploads: Promise<void> = Promise.resolve();
    let uploadError: Error | null = null;
    try {
      // A running update right away tells the dashboard the task started and checks the lease;
      // it goes out while the blend downloads rather than after. Its error is looked at below.
      const started = client.updateTask({ ...lease, status: 'running', message: 'rendering' }).then(
        () => null,
        (err: unknown) => err,
      );
      let blendPath: string;
      try {
        blendPath = await cache.ensure(task.blend_file, task.blend_sha256, task);
      } catch (err) {
        await started;
        if (leaseGone(err)) return (loseLease(err), 'lease_lost');
        if (stop.aborted) return await this.release(lease, label);
        return await this.fail(lease, label, `downloading the blend file: ${(err as Error).message}`, 'download_failed', '', logPath);
      }
      const startError = await started;
      if (startError) {
        if (leaseGone(startError)) return (loseLease(startError), 'lease_lost');
        throw startError;
      }

      const wanted = new Set(task.frames);
      const missingFound = (missingFiles = new MissingFiles(blendPath));
      const renderHooks: RenderHooks = {
        onLine: (line) => {
          const event = parseBlenderLine(line);
          if (event?.kind === 'progress' && event.peakMb) peakMemMb = Math.max(peakMemMb, event.peakMb);
          else missingFound.add(event);
        },
        onFrameStart: (frame) => {
          currentFrame = frame;
        },
        onSaved: (frame, path, renderMs) => {
          // Only files inside this task's folder are uploaded, whatever a line of output claims.
          if (!wanted.has(frame) || !isInsideDir(outDir, path)) return;
          // Upload while Blender renders the next frame; uploads stay in order, one at a time.
          uploads = uploads.then(async () => {
            if (uploadError || lost) return;
            try {
              await client.uploadFrame({ workerId, taskId: task.task_id, leaseId: task.lease_id, frame, path, renderMs });
              uploaded.add(frame);
              await this.deps.previews?.send({ workerId, taskId: task.task_id, leaseId: task.lease_id, frame, path });
              await rm(path, { force: true });
            } catch (err) {
              if (leaseGone(err)) loseLease(err);
              else uploadError = err as Error;
            }
          });
        },
      };
      const outputPattern = join(outDir, 'frame_######');
      const result = this.deps.hot
        ? await this.renderHot(this.deps.hot, task, blendPath, outputPattern, logPath, render.signal, renderHooks)
        : await this.renderCold(task, blendPath, outputPattern, outDir, logPath, render.signal, renderHooks);
      await uploads;
      // Blender is free and the frames are up: the poll loop may claim the next task while the
      // log and the report go out.
      markFramesDone();
      if (lost) return 'lease_lost';
      if (render.signal.aborted && stop.aborted) return await this.release(lease, label);
      if (render.signal.aborted) return 'aborted';
      const tail = result.tail.join('\n');
      const warnings = missingFound.all();
      if (warnings.length > 0) log.warn(`${label}: ${warnings.join('; ')}`);
      if (uploadError) {
        return await this.fail(lease, label, `uploading frames: ${(uploadError as Error).message}`, 'upload_failed', tail, logPath, warnings);
      }
      const missing = task.frames.filter((f) => !uploaded.has(f));
      if (result.failure) return await this.fail(lease, label, result.failure.message, result.failure.reason, tail, logPath, warnings);
      if (result.exitCode !== 0 || result.signal || missing.length > 0) {
        const failure = classifyBlenderFailure({ exitCode: result.exitCode, signal: result.signal, tail: result.tail });
        const message =
          result.exitCode === 0 && !result.signal
            ? `Blender exited 0 but did not save frame(s) ${missing.slice(0, 10).join(', ')}: ${failure.message}`
            : failure.message;
        return await this.fail(lease, label, message, result.exitCode === 0 && failure.reason === 'unknown' ? 'missing_output' : failure.reason, tail, logPath, warnings);
      }
      await this.uploadLog(lease, logPath);
      await client.updateTask({
        ...lease,
        status: 'completed',
        message: `rendered ${task.frames.length} frame(s) in ${(result.durationMs / 1000).toFixed(1)} s`,
        peak_mem_mb: peakMemMb || undefined,
        ...(warnings.length ? { warnings } : {}),
      });
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

  /**
   * One `blender -b FILE ... -a` (or `-f LIST`) process for the task's frames; frames are picked
   * up from Blender's "Saved:" lines.
   */
  private async renderCold(
    task: TaskAssignment,
    blendPath: string,
    outputPattern: string,
    outDir: string,
    logPath: string,
    signal: AbortSignal,
    hooks: RenderHooks,
  ): Promise<RenderOutcome> {
    const { config, log } = this.deps;
    const args = buildRenderArgs({ blendPath, outputPattern, frames: task.frames, threads: config.threads, pythonExprs: [REPORT_MISSING_FILES_EXPR] });
    let currentFrame: number | undefined;
    let frameStartedAt = Date.now();
    const result = await runProcess(config.blender, args, {
      cwd: outDir,
      logPath,
      signal,
      killGraceMs: 5_000,
      onStart: () => log.info(`running ${formatCommandLine(config.blender, args)}`),
      onLine: (line) => {
        hooks.onLine(line);
        const event = parseBlenderLine(line);
        if (event?.kind === 'progress' && event.frame !== currentFrame) {
          currentFrame = event.frame;
          frameStartedAt = Date.now();
          hooks.onFrameStart(event.frame);
        } else if (event?.kind === 'saved') {
          const frame = event.frame ?? currentFrame;
          if (frame === undefined) return;
          const renderMs = Date.now() - frameStartedAt;
          frameStartedAt = Date.now();
          hooks.onSaved(frame, event.path, renderMs);
        }
      },
    });
    return { exitCode: result.exitCode, signal: result.signal, tail: result.tail, durationMs: result.durationMs };
  }

  /**
   * The task's frames, in order, in the node's hot Blender for this job (see hot-blender.ts):
   * the file is loaded once per job, not once per task. Blender's output goes to the task's log.
   */
  private async renderHot(
    hot: HotBlender,
    task: TaskAssignment,
    blendPath: string,
    outputPattern: string,
    logPath: string,
    signal: AbortSignal,
    hooks: RenderHooks,
  ): Promise<RenderOutcome> {
    const startedMs = performance.now();
    const logFile = createWriteStream(logPath, { flags: 'a' });
    // A full disk must not fail the render; the log is a courtesy.
    logFile.on('error', () => {});
    const tail: string[] = [];
    const onLine = (line: string) => {
      tail.push(line);
      if (tail.length > 100) tail.shift();
      logFile.write(`${line}\n`);
      hooks.onLine(line);
    };
    // The same Blender serves every task of this job with these settings; anything else gets a new one.
    const key = `${task.job_id}/${task.blend_sha256}/t${this.deps.config.threads}`;
    const outcome = (fields: Omit<RenderOutcome, 'durationMs'>): RenderOutcome => ({ ...fields, durationMs: Math.round(performance.now() - startedMs) });
    try {
      await hot.renderFrames({
        key,
        blendPath,
        frames: task.frames,
        outputPattern,
        onLine,
        signal,
        onFrameStarted: (frame) => hooks.onFrameStart(frame),
        onFrameSaved: (saved) => {
          onLine(
            `# hot Blender pid ${saved.pid}${saved.started ? ' (started for this task)' : ''}: frame ${saved.frame} in ${saved.wallMs} ms ` +
              `(render ${saved.renderSeconds} s, stepping ${saved.stepSeconds} s), RSS ${saved.rssMb === null ? '?' : Math.round(saved.rssMb)} MB`,
          );
          hooks.onSaved(saved.frame, saved.path, saved.wallMs);
        },
      });
      return outcome({ exitCode: 0, signal: null, tail });
    } catch (err) {
      if (!(err instanceof HotBlenderError)) throw err;
      if (err.kind === 'aborted') return outcome({ exitCode: null, signal: null, tail });
      onLine(`# ${err.message}`);
      const failed = { exitCode: err.exitCode, signal: err.signal, tail: err.tail };
      return outcome({ ...failed, failure: classifyBlenderFailure(failed) });
    } finally {
      await new Promise<void>((resolve) => logFile.end(resolve));
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
    warnings: string[] = [],
  ): Promise<TaskOutcome> {
    this.deps.log.error(`failed ${label}: ${message}`);
    await this.uploadLog(lease, logPath);
    try {
      await this.deps.client.updateTask({
        ...lease,
        status: 'failed',
        message,
        failure_reason: reason.slice(0, 64),
        log_tail: tail.slice(-60_000),
        ...(warnings.length ? { warnings } : {}),
      });
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
