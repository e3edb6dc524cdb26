/**
 * Runs one claimed task: fetch the blend, render the frames with Blender, upload each frame as
 * soon as Blender saves it (while the next one renders), keep the lease alive, then report.
 *
 * Outcomes: `completed` once every frame is uploaded; `failed` with Blender's classified error
 * and log tail; `released` when the node is shutting down; nothing at all when the master says
 * the lease is gone (another node has the frames now).
 *
 * By the task's kind: `render` as above, on the devices the job asks for (gpu/task-device.ts);
 * `tile` the same with one Blender process per tile that renders only its border
 * (tasks/render-tile.ts) and uploads it as the task's output; `stitch` and `video` render nothing
 * but download the job's tiles or frames and put them together (tasks/stitch.ts,
 * tasks/preview-video-task.ts), under the same lease, report and failure rules.
 */
import { appendFileSync, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { TASK_OUTPUT_TYPES, type TaskAssignment } from '../protocol/schemas.ts';
import { classifyBlenderFailure, type BlenderFailure } from './blender/classify-failure.ts';
import { HotBlenderError, type HotBlender } from './blender/hot-blender.ts';
import { MissingFiles, REPORT_MISSING_FILES_EXPR } from './blender/missing-files.ts';
import { parseBlenderLine } from './blender/output-parser.ts';
import { buildRenderArgs } from './blender/render-args.ts';
import type { BlendCache } from './blend-cache.ts';
import type { FramePreviews } from './frame-preview.ts';
import type { NodeConfig } from './config.ts';
import type { MasterClient } from './master-client.ts';
import type { CyclesDevice } from './gpu/detect-devices.ts';
import { backendsOf, taskDevice, type TaskDevice } from './gpu/task-device.ts';
import type { InputTask } from './tasks/input-task.ts';
import { previewVideoTask } from './tasks/preview-video-task.ts';
import { planTileRender } from './tasks/render-tile.ts';
import { stitchTask } from './tasks/stitch.ts';
import { TaskFailure } from './tasks/task-failure.ts';
import { leaseGone, TaskLease, type LeaseIds } from './tasks/task-lease.ts';
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
  /** The GPUs of this render slot (node-slots.ts); none: the node renders on its CPU. */
  gpus?: CyclesDevice[];
}

/** The work of the task kinds that render nothing, and the failure_reason when it fails. */
const INPUT_TASKS: Record<'stitch' | 'video', { work: InputTask; failureReason: string; doing: string }> = {
  stitch: { work: stitchTask, failureReason: 'stitch_failed', doing: 'stitching tiles' },
  video: { work: previewVideoTask, failureReason: 'video_failed', doing: 'making the preview video' },
};

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
  onSaved: (frame: number, path: string, renderMs: number, previewPath?: string) => void;
}

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
      if (task.kind === 'stitch' || task.kind === 'video') return await this.runInputTask(task, stop, INPUT_TASKS[task.kind]);
      return await this.runTask(task, stop, markFramesDone);
    } finally {
      markFramesDone();
    }
  }

  private async runTask(task: TaskAssignment, stop: AbortSignal, markFramesDone: () => void): Promise<TaskOutcome> {
    const { config, client, workerId, log } = this.deps;
    const { lease, label, dir: outDir, logPath } = await this.prepare(task);

    let currentFrame: number | undefined;
    let peakMemMb = 0;
    // Missing textures and libraries Blender reported; sent with renewals and the final report.
    let missingFiles: MissingFiles | null = null;
    const held = new TaskLease({
      client,
      log,
      ids: lease,
      label,
      leaseMs: task.lease_ms,
      stop,
      progress: () => ({ current_frame: currentFrame, peak_mem_mb: peakMemMb || undefined }),
      warnings: () => missingFiles,
    });
    const loseLease = (why: unknown) => held.loseLease(why);
    const gpus = this.deps.gpus ?? [];
    // The schema defaults `device`; a task built in code without it asks for anything.
    const device = taskDevice(task.device ?? 'any', gpus);
    const tileTask = task.kind === 'tile';

    const uploaded = new Set<number>();
    let uploads: Promise<void> = Promise.resolve();
    let uploadError: Error | null = null;
    try {
      if (!device) {
        // The master matched the job to this slot's devices; reaching here means they disagree.
        const has = backendsOf(gpus).join(', ');
        return await this.fail(
          lease,
          label,
          `this node cannot render a job that asks for device "${task.device}": it renders with ${has}`,
          'no_matching_device',
          '',
          logPath,
        );
      }
      const fetched = await this.startAndFetchBlend(task, { lease, label, logPath }, held, stop, 'rendering');
      if (typeof fetched !== 'string') return fetched.outcome;
      const blendPath = fetched;
      // A tile renders only its border of the frame; planning it reads the scene's size first.
      const tileExprs: string[] = [];
      if (tileTask) {
        try {
          tileExprs.push((await planTileRender(config.blender, blendPath, task, held.signal)).pythonExpr);
        } catch (err) {
          if (held.lost) return 'lease_lost';
          if (held.signal.aborted) return stop.aborted ? await this.release(lease, label) : 'aborted';
          return await this.fail(lease, label, (err as Error).message, err instanceof TaskFailure ? err.reason : 'tile_failed', '', logPath);
        }
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
        onSaved: (frame, path, renderMs, previewPath) => {
          // Only files inside this task's folder are uploaded, whatever a line of output claims.
          if (!wanted.has(frame) || !isInsideDir(outDir, path)) return;
          // Upload while Blender renders the next frame; uploads stay in order, one at a time.
          uploads = uploads.then(async () => {
            if (uploadError || held.lost) return;
            try {
              if (tileTask) {
                // A tile is the task's output, for the stitch task; the job's frame comes from that.
                await client.uploadOutput({ workerId, taskId: task.task_id, leaseId: task.lease_id, path, contentType: TASK_OUTPUT_TYPES.tile });
                uploaded.add(frame);
              } else {
                await client.uploadFrame({ workerId, taskId: task.task_id, leaseId: task.lease_id, frame, path, renderMs });
                uploaded.add(frame);
                await this.deps.previews?.send({ workerId, taskId: task.task_id, leaseId: task.lease_id, frame, path, previewPath });
              }
              await rm(path, { force: true });
            } catch (err) {
              if (leaseGone(err)) loseLease(err);
              else uploadError = err as Error;
            }
          });
        },
      };
      const outputPattern = join(outDir, 'frame_######');
      // The hot Blender takes no per-task snippets, so a tile always gets a process of its own;
      // it is saved as PNG whatever the file says, since tiles are stitched as PNG.
      const result =
        this.deps.hot && !tileTask
          ? await this.renderHot(this.deps.hot, task, blendPath, outputPattern, logPath, held.signal, renderHooks, device)
          : await this.renderCold(task, blendPath, outputPattern, outDir, logPath, held.signal, renderHooks, {
              pythonExprs: [...device.pythonExprs, ...tileExprs],
              ...(tileTask ? { format: 'PNG' as const } : {}),
            });
      await uploads;
      // Blender is free and the frames are up: the poll loop may claim the next task while the
      // log and the report go out.
      markFramesDone();
      if (held.lost) return 'lease_lost';
      if (held.signal.aborted && stop.aborted) return await this.release(lease, label);
      if (held.signal.aborted) return 'aborted';
      const tail = result.tail.join('\n');
      const warnings = missingFound.all();
      if (warnings.length > 0) log.warn(`${label}: ${warnings.join('; ')}`);
      if (uploadError) {
        return await this.fail(
          lease,
          label,
          `uploading ${tileTask ? 'the tile' : 'frames'}: ${(uploadError as Error).message}`,
          'upload_failed',
          tail,
          logPath,
          warnings,
        );
      }
      const missing = task.frames.filter((f) => !uploaded.has(f));
      if (result.failure) return await this.fail(lease, label, result.failure.message, result.failure.reason, tail, logPath, warnings);
      if (result.exitCode !== 0 || result.signal || missing.length > 0) {
        const failure = classifyBlenderFailure({ exitCode: result.exitCode, signal: result.signal, tail: result.tail });
        const message =
          result.exitCode === 0 && !result.signal
            ? `Blender exited 0 but did not save frame(s) ${missing.slice(0, 10).join(', ')}: ${failure.message}`
            : failure.message;
        return await this.fail(
          lease,
          label,
          message,
          result.exitCode === 0 && failure.reason === 'unknown' ? 'missing_output' : failure.reason,
          tail,
          logPath,
          warnings,
        );
      }
      await this.uploadLog(lease, logPath);
      await client.updateTask({
        ...lease,
        status: 'completed',
        message: `rendered ${describeWork(task)} in ${(result.durationMs / 1000).toFixed(1)} s${device.backend === 'cpu' ? '' : ` on ${device.backend}`}`,
        peak_mem_mb: peakMemMb || undefined,
        ...(warnings.length ? { warnings } : {}),
      });
      log.info(`completed ${label} in ${(result.durationMs / 1000).toFixed(1)} s`);
      return 'completed';
    } catch (err) {
      if (leaseGone(err)) return (loseLease(err), 'lease_lost');
      throw err;
    } finally {
      held.end();
      await rm(outDir, { recursive: true, force: true }).catch(() => {});
    }
  }

  /**
   * A stitch or video task: no render, but the job's tiles or frames downloaded, put together
   * and uploaded by `kind.work`, under the task's lease. The blend is fetched as for a render
   * (its scene gives the render size and the frame rate). A failure is reported as `failed`
   * with the TaskFailure's reason, or `kind.failureReason` for any other error.
   */
  private async runInputTask(task: TaskAssignment, stop: AbortSignal, kind: (typeof INPUT_TASKS)[keyof typeof INPUT_TASKS]): Promise<TaskOutcome> {
    const { config, client, workerId, log } = this.deps;
    const { lease, label, dir, logPath } = await this.prepare(task);
    const note = (line: string) => {
      try {
        appendFileSync(logPath, `# ${new Date().toISOString()} ${line}\n`);
      } catch {
        // The log is a courtesy; a full disk shows up in the work itself.
      }
    };
    const held = new TaskLease({ client, log, ids: lease, label, leaseMs: task.lease_ms, stop });
    const startedMs = performance.now();
    try {
      const fetched = await this.startAndFetchBlend(task, { lease, label, logPath }, held, stop, kind.doing);
      if (typeof fetched !== 'string') return fetched.outcome;
      const blendPath = fetched;
      let message: string;
      try {
        message = await kind.work({
          task,
          client,
          workerId,
          blender: config.blender,
          blendPath,
          dir,
          logPath,
          signal: held.signal,
          note,
          previews: this.deps.previews,
        });
      } catch (err) {
        if (held.lost) return 'lease_lost';
        if (held.signal.aborted) return stop.aborted ? await this.release(lease, label) : 'aborted';
        if (err instanceof TaskFailure) return await this.fail(lease, label, err.message, err.reason, '', logPath);
        if (leaseGone(err)) return (held.loseLease(err), 'lease_lost');
        return await this.fail(lease, label, `${kind.doing}: ${(err as Error).message}`, kind.failureReason, '', logPath);
      }
      if (held.lost) return 'lease_lost';
      note(message);
      await this.uploadLog(lease, logPath);
      await client.updateTask({ ...lease, status: 'completed', message });
      log.info(`completed ${label} in ${((performance.now() - startedMs) / 1000).toFixed(1)} s: ${message}`);
      return 'completed';
    } catch (err) {
      if (leaseGone(err)) return (held.loseLease(err), 'lease_lost');
      throw err;
    } finally {
      held.end();
      await rm(dir, { recursive: true, force: true }).catch(() => {});
    }
  }

  /** Checks the task's ids, names it for the log, and gives it an empty work folder and a log path. */
  private async prepare(task: TaskAssignment): Promise<{ lease: LeaseIds; label: string; dir: string; logPath: string }> {
    const { config, workerId, log } = this.deps;
    if (!ID.test(task.task_id) || !ID.test(task.lease_id)) throw new Error(`refusing task with malformed ids from the master`);
    const lease: LeaseIds = { worker_id: workerId, task_id: task.task_id, lease_id: task.lease_id };
    const label = `job ${printable(task.job_name)} ${describeWork(task)} (task ${task.task_id.slice(0, 8)}, attempt ${task.attempt})`;
    log.info(`claimed ${label}`);
    const dir = join(config.workDir, 'renders', task.task_id);
    const logPath = join(config.workDir, 'logs', `${task.task_id}-${task.attempt}.log`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await mkdir(join(config.workDir, 'logs'), { recursive: true });
    return { lease, label, dir, logPath };
  }

  /**
   * Reports the task running and fetches its blend, both at once: the running update tells the
   * dashboard the task started and checks the lease while the blend downloads rather than after.
   * Returns the blend's path, or the task's outcome when it cannot go on.
   */
  private async startAndFetchBlend(
    task: TaskAssignment,
    ctx: { lease: LeaseIds; label: string; logPath: string },
    held: TaskLease,
    stop: AbortSignal,
    doing: string,
  ): Promise<string | { outcome: TaskOutcome }> {
    const { lease, label, logPath } = ctx;
    const started = this.deps.client.updateTask({ ...lease, status: 'running', message: doing }).then(
      () => null,
      (err: unknown) => err,
    );
    let blendPath: string;
    try {
      blendPath = await this.deps.cache.ensure(task.blend_file, task.blend_sha256, task);
    } catch (err) {
      await started;
      if (leaseGone(err)) return (held.loseLease(err), { outcome: 'lease_lost' });
      if (stop.aborted) return { outcome: await this.release(lease, label) };
      return { outcome: await this.fail(lease, label, `downloading the blend file: ${(err as Error).message}`, 'download_failed', '', logPath) };
    }
    const startError = await started;
    if (startError) {
      if (leaseGone(startError)) return (held.loseLease(startError), { outcome: 'lease_lost' });
      throw startError;
    }
    return blendPath;
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
    extra: { pythonExprs: string[]; format?: 'PNG' },
  ): Promise<RenderOutcome> {
    const { config, log } = this.deps;
    const args = buildRenderArgs({
      blendPath,
      outputPattern,
      frames: task.frames,
      threads: config.threads,
      pythonExprs: [REPORT_MISSING_FILES_EXPR, ...extra.pythonExprs],
      ...(extra.format ? { format: extra.format } : {}),
    });
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
    device: TaskDevice,
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
    const key = `${task.job_id}/${task.blend_sha256}/t${this.deps.config.threads}/${device.key}`;
    const outcome = (fields: Omit<RenderOutcome, 'durationMs'>): RenderOutcome => ({ ...fields, durationMs: Math.round(performance.now() - startedMs) });
    try {
      await hot.renderFrames({
        key,
        blendPath,
        frames: task.frames,
        outputPattern,
        startupExprs: device.pythonExprs,
        onLine,
        signal,
        onFrameStarted: (frame) => hooks.onFrameStart(frame),
        onFrameSaved: (saved) => {
          onLine(
            `# hot Blender pid ${saved.pid}${saved.started ? ' (started for this task)' : ''}: frame ${saved.frame} in ${saved.wallMs} ms ` +
              `(render ${saved.renderSeconds} s, stepping ${saved.stepSeconds} s), RSS ${saved.rssMb === null ? '?' : Math.round(saved.rssMb)} MB`,
          );
          hooks.onSaved(saved.frame, saved.path, saved.wallMs, saved.previewPath);
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
      // No log written (a task that failed before running anything): nothing to send.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
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

/** What a task does, for log lines and reports: "frames 1-5", "tile 2/4 of frame 1", ... */
function describeWork(task: TaskAssignment): string {
  const first = task.frames[0];
  const last = task.frames[task.frames.length - 1];
  const frames = first === last ? `frame ${first}` : `frames ${first}-${last}`;
  switch (task.kind) {
    case 'tile':
      return task.tile ? `tile ${task.tile.index + 1}/${task.tile.count} of frame ${first}` : `a tile of ${frames}`;
    case 'stitch':
      return `stitching ${task.tile?.count ?? '?'} tiles of frame ${first}`;
    case 'video':
      return `preview video of ${frames}`;
    default:
      return frames;
  }
}
