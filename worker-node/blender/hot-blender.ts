/**
 * Hot Blender: one long-lived Blender process that renders a job's successive frames without
 * loading the .blend again. Starting Blender, loading the file and (for a live simulation)
 * re-simulating from the first frame is what one process per frame or per chunk pays again
 * and again; a hot process pays it once per job.
 *
 * The process runs `hot_render.py` (next to this file) inside Blender started with the safe
 * arguments (launch.ts): `blender SAFE_ARGS FILE [-t N] --python hot_render.py`,
 * takes one JSON command per line on stdin and answers with JSON events on fd 3, a pipe of its
 * own (Blender's stdout carries its own progress lines, which go to the task's log as before).
 *
 * A call renders a list of frames (a task's): the driver renders each run of consecutive frames
 * with Blender's own animation render, so frame follows frame inside Blender without waiting for
 * the node, and reports each frame as its file is written. With `preview` set (the default unless
 * FARM_PREVIEWS=off) the driver also writes each frame's dashboard preview (a small JPEG) before
 * reporting the frame, and the result carries its path: the node then uploads it instead of
 * running ffmpeg per frame (frame-preview.ts). A failed preview is a warning, never a failed frame.
 *
 * One process at a time, keyed by what it was started for (the job, the blend's SHA-256 and the
 * render settings). It is replaced when a call brings another key, after it exited or crashed,
 * after `maxFrames` frames (a call's frames are split so that no process renders more), once its
 * resident memory after a call passed `maxMemMb`, and it is stopped after `idleMs` without work
 * so an idle node does not hold Blender's memory. Calls are serialised: one waits for the one
 * before it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Readable, Writable } from 'node:stream';
import { formatCommandLine } from '../process/run-process.ts';
import { blenderArgs } from './launch.ts';
import type { Logger } from '../logger.ts';
import { REPORT_MISSING_FILES_EXPR } from './missing-files.ts';
import { driverPreviewSettings, type DriverPreviewSettings } from '../frame-preview.ts';

/** The driver that runs inside Blender. */
const HOT_RENDER_SCRIPT = fileURLToPath(new URL('./hot_render.py', import.meta.url));
/** The events pipe's descriptor number inside Blender (0-2 are stdin, stdout, stderr). */
const EVENTS_FD = 3;
/** Lines of Blender's output kept for error reports. */
const TAIL_LINES = 100;
/** After "quit", how long an idle Blender gets to exit before its process group is signalled. */
const QUIT_GRACE_MS = 5_000;
/** Between SIGTERM and SIGKILL. */
const KILL_GRACE_MS = 5_000;

export interface HotBlenderOptions {
  blender: string;
  /** Blender's -t (0 = all cores); left out when undefined. */
  threads?: number;
  /** Restart the process after it rendered this many frames; 0 = never. */
  maxFrames: number;
  /** Restart the process when its resident memory after a call (a task) is above this (MB); 0 = never. */
  maxMemMb: number;
  /** Stop the process after this long without a render; 0 = keep it. */
  idleMs: number;
  log?: Logger;
  /** The driver script; tests may point elsewhere. */
  script?: string;
  /**
   * Previews the driver writes beside each frame; null = none. Default: the dashboard's preview
   * size and quality, or none with FARM_PREVIEWS=off.
   */
  preview?: DriverPreviewSettings | null;
}

export interface HotRenderRequest {
  /** What the process is for (job, blend SHA-256, settings): another key starts another process. */
  key: string;
  /** Absolute path of the .blend. */
  blendPath: string;
  /** Frames to render, ascending, each once. */
  frames: number[];
  /** Absolute output pattern with # for the frame number, as for `-o`. */
  outputPattern: string;
  /**
   * `--python-expr` snippets run once when the process starts, after the file loads and before
   * the driver (e.g. gpu/enable-devices.ts turning the slot's GPUs on). Only a started process
   * runs them: the key must change when they do.
   */
  startupExprs?: string[];
  /** Blender's output lines while these frames render (with the start-up lines if it started Blender). */
  onLine?: (line: string) => void;
  /** A frame Blender started rendering. */
  onFrameStarted?: (frame: number) => void;
  /** A frame whose file Blender wrote, as soon as it did. */
  onFrameSaved?: (result: HotFrameResult) => void;
  /** Aborting stops the process (its whole process group) and rejects with kind 'aborted'. */
  signal?: AbortSignal;
}

export interface HotFrameResult {
  frame: number;
  /** The saved file: the pattern's # run replaced by the zero-padded frame, plus the extension. */
  path: string;
  /** Wall time from the node's side since the previous frame was saved (or the call began), including stepping and any start-up. */
  wallMs: number;
  /** Time Blender spent in the render operator. */
  renderSeconds: number;
  /** Time spent evaluating frames before this one (simulation stepping). */
  stepSeconds: number;
  /** Blender's resident and peak resident memory after the frame, MB (null if unknown). */
  rssMb: number | null;
  peakRssMb: number | null;
  pid: number;
  /** True for the first frame of a freshly started Blender (whose wallMs includes loading the file). */
  started: boolean;
  /** The JPEG preview the driver wrote beside the frame; absent when off or when it failed. */
  previewPath?: string;
  /** Time Blender spent on the preview (absent when previews are off). */
  previewSeconds?: number;
}

export type HotBlenderErrorKind = 'exited' | 'render_error' | 'aborted';

/**
 * A frame that was not rendered. 'exited': Blender ended (crash, kill, or a file it could not
 * load) with `exitCode`/`signal`; 'render_error': the render raised an error and the process
 * was stopped; 'aborted': the caller's signal stopped it. `tail` is Blender's last output.
 */
export class HotBlenderError extends Error {
  readonly kind: HotBlenderErrorKind;
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly tail: string[];
  constructor(kind: HotBlenderErrorKind, message: string, details: { exitCode?: number | null; signal?: NodeJS.Signals | null; tail?: string[] } = {}) {
    super(message);
    this.name = 'HotBlenderError';
    this.kind = kind;
    this.exitCode = details.exitCode ?? null;
    this.signal = details.signal ?? null;
    this.tail = details.tail ?? [];
  }
}

interface HotEvent {
  event: 'ready' | 'frame_started' | 'frame_saved' | 'done' | 'error';
  id?: string | null;
  frame?: number | null;
  path?: string;
  message?: string;
  traceback?: string;
  render_seconds?: number;
  step_seconds?: number;
  rss_mb?: number | null;
  peak_rss_mb?: number | null;
  sequential?: boolean;
  unbaked?: string[];
  preview_path?: string;
  preview_seconds?: number;
  preview_error?: string;
}

/** One running Blender with the driver loaded. */
class HotProcess {
  readonly key: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  framesRendered = 0;
  lastRssMb: number | null = null;
  /** Why the next render must start afresh, once a limit was reached. */
  retireReason: string | null = null;
  /** Set while the node stops it on purpose, so its exit is not reported as a crash. */
  stopping = false;
  /** A failed preview is logged once per process, not once per frame. */
  previewWarned = false;
  readonly tail: string[] = [];
  sink: ((line: string) => void) | undefined;
  /** Events not yet taken by `next`, oldest first. */
  private queue: HotEvent[] = [];
  private wake: (() => void) | null = null;

  constructor(key: string, child: ChildProcess) {
    this.key = key;
    this.child = child;
    this.pid = child.pid!;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    splitLines(child.stdout!, (line) => this.line(line));
    splitLines(child.stderr!, (line) => this.line(line));
    splitLines(child.stdio[EVENTS_FD] as Readable, (line) => {
      let event: HotEvent;
      try {
        event = JSON.parse(line) as HotEvent;
      } catch {
        this.line(`# hot Blender sent a malformed event: ${line.slice(0, 200)}`);
        return;
      }
      this.queue.push(event);
      this.wake?.();
    });
    // Writing to a Blender that died is reported through its exit, not as an EPIPE crash.
    child.stdin!.on('error', () => {});
  }

  private line(line: string): void {
    this.tail.push(line);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
    this.sink?.(line);
  }

  get alive(): boolean {
    return this.exit === null;
  }

  send(command: object): void {
    (this.child.stdin as Writable).write(`${JSON.stringify(command)}\n`);
  }

  /**
   * The next event `accept` takes (others are dropped), or the process's exit, or the abort of
   * `signal`, whichever comes first.
   */
  async next(accept: (event: HotEvent) => boolean, signal?: AbortSignal): Promise<{ event: HotEvent } | { exited: true } | { aborted: true }> {
    let exitedAt: number | null = null;
    void this.exited.then(() => {
      exitedAt = performance.now();
      this.wake?.();
    });
    const onAbort = () => this.wake?.();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        while (this.queue.length > 0) {
          const event = this.queue.shift()!;
          if (accept(event)) return { event };
        }
        if (signal?.aborted) return { aborted: true };
        // Events the driver wrote just before exiting may still be in the pipe: let them land.
        if (exitedAt !== null && performance.now() - exitedAt >= 50) return { exited: true };
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          if (exitedAt !== null) setTimeout(resolve, 50);
        });
        this.wake = null;
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  signalGroup(sig: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, sig);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }

  /** Asks Blender to quit; signals its process group if it does not. Resolves once it exited. */
  async stop(graceMs = QUIT_GRACE_MS): Promise<void> {
    this.stopping = true;
    if (this.alive) {
      this.send({ cmd: 'quit' });
      this.child.stdin!.end();
    }
    await this.kill(graceMs);
  }

  /** SIGTERM to the process group after `afterMs` (if still alive), SIGKILL after a further grace. */
  async kill(afterMs = 0): Promise<void> {
    this.stopping = true;
    const timers: NodeJS.Timeout[] = [];
    if (this.alive) {
      timers.push(setTimeout(() => this.signalGroup('SIGTERM'), afterMs));
      timers.push(setTimeout(() => this.signalGroup('SIGKILL'), afterMs + KILL_GRACE_MS));
    }
    await this.exited;
    timers.forEach(clearTimeout);
    // Anything Blender started in its group goes with it.
    this.signalGroup('SIGKILL');
  }
}

/**
 * Renders frames in one long-lived Blender per key. See the module comment for when the
 * process is replaced.
 */
export class HotBlender {
  private readonly options: HotBlenderOptions;
  private readonly preview: DriverPreviewSettings | null;
  private proc: HotProcess | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private idleTimer: NodeJS.Timeout | undefined;
  private commandSeq = 0;
  /** Processes started so far, for logs and tests. */
  startedCount = 0;

  constructor(options: HotBlenderOptions) {
    this.options = options;
    this.preview = options.preview === undefined ? driverPreviewSettings() : options.preview;
  }

  /** The pid of the current Blender process, if one is running. */
  get pid(): number | null {
    return this.proc?.alive ? this.proc.pid : null;
  }

  /** Frames rendered by the current process. */
  get framesRendered(): number {
    return this.proc?.framesRendered ?? 0;
  }

  /**
   * Renders `req.frames` in the hot process for `req.key`, starting or replacing the process
   * first when needed, and resolves with every frame's result once all are saved. Calls are
   * serialised. Frames of one key are best asked for in ascending order across calls: with an
   * unbaked simulation, an earlier frame means stepping again from the scene start.
   */
  renderFrames(req: HotRenderRequest): Promise<HotFrameResult[]> {
    const run = this.queue.then(() => this.renderNow(req));
    this.queue = run.catch(() => {});
    return run;
  }

  /** Stops the process (after the render in progress, if any). */
  dispose(): Promise<void> {
    const run = this.queue.then(() => this.stopProcess('the node is done with it'));
    this.queue = run.catch(() => {});
    return run;
  }

  private async renderNow(req: HotRenderRequest): Promise<HotFrameResult[]> {
    clearTimeout(this.idleTimer);
    if (req.frames.length === 0) return [];
    if (req.frames.some((f, i) => !Number.isInteger(f) || (i > 0 && f <= req.frames[i - 1]!))) {
      throw new Error(`frames must be whole, ascending and unique, got ${req.frames.slice(0, 10).join(', ')}`);
    }
    const results: HotFrameResult[] = [];
    let remaining = [...req.frames];
    let lastMs = performance.now();
    while (remaining.length > 0) {
      if (req.signal?.aborted) throw new HotBlenderError('aborted', 'the render was aborted before it started');
      const started = await this.ensureProcess(req);
      const proc = this.proc!;
      proc.sink = req.onLine;
      const { maxFrames, maxMemMb } = this.options;
      // No process renders more than maxFrames: the rest go to the next one.
      const batch = maxFrames > 0 ? remaining.slice(0, Math.max(1, maxFrames - proc.framesRendered)) : remaining;
      const id = String(++this.commandSeq);
      proc.send({ cmd: 'render', id, frames: batch, output: req.outputPattern, preview: this.preview });

      let first = started;
      for (;;) {
        const outcome = await proc.next((event) => event.id === id, req.signal);
        if ('aborted' in outcome) {
          await this.killProcess();
          throw new HotBlenderError('aborted', `rendering frames ${describeFrames(batch)} was aborted`, { tail: [...proc.tail] });
        }
        if ('exited' in outcome) {
          this.proc = null;
          const exit = proc.exit!;
          const at = remaining[0];
          throw new HotBlenderError('exited', `Blender exited while rendering frame ${at} (${describeExit(exit)})`, {
            exitCode: exit.code,
            signal: exit.signal,
            tail: [...proc.tail],
          });
        }
        const { event } = outcome;
        if (event.event === 'frame_started' && typeof event.frame === 'number') {
          req.onFrameStarted?.(event.frame);
        } else if (event.event === 'frame_saved' && typeof event.frame === 'number') {
          proc.framesRendered++;
          proc.lastRssMb = event.rss_mb ?? null;
          const now = performance.now();
          const result: HotFrameResult = {
            frame: event.frame,
            path: event.path!,
            wallMs: Math.round(now - lastMs),
            renderSeconds: event.render_seconds ?? 0,
            stepSeconds: event.step_seconds ?? 0,
            rssMb: event.rss_mb ?? null,
            peakRssMb: event.peak_rss_mb ?? null,
            pid: proc.pid,
            started: first,
            ...(event.preview_path ? { previewPath: event.preview_path } : {}),
            ...(event.preview_seconds !== undefined ? { previewSeconds: event.preview_seconds } : {}),
          };
          if (event.preview_error && !proc.previewWarned) {
            proc.previewWarned = true;
            this.options.log?.warn(`hot Blender could not make the preview of frame ${event.frame} (the node makes it instead): ${event.preview_error}`);
          }
          lastMs = now;
          first = false;
          remaining = remaining.filter((f) => f !== event.frame);
          results.push(result);
          req.onFrameSaved?.(result);
        } else if (event.event === 'error') {
          // The scene may be half-evaluated: the next call gets a fresh Blender.
          const tail = [...proc.tail, `Error: ${event.message ?? 'unknown error'}`];
          await this.stopProcess(`frame ${event.frame ?? remaining[0]} failed`);
          throw new HotBlenderError('render_error', `Blender could not render frame ${event.frame ?? remaining[0]}: ${event.message}`, { tail });
        } else if (event.event === 'done') {
          break;
        }
      }

      if (maxFrames > 0 && proc.framesRendered >= maxFrames) {
        proc.retireReason = `it rendered ${proc.framesRendered} frames (--hot-max-frames ${maxFrames})`;
      } else if (maxMemMb > 0 && proc.lastRssMb !== null && proc.lastRssMb > maxMemMb) {
        proc.retireReason = `it holds ${Math.round(proc.lastRssMb)} MB after its frames (--hot-max-mem-mb ${maxMemMb})`;
      }
    }
    if (this.options.idleMs > 0) {
      this.idleTimer = setTimeout(() => void this.dispose(), this.options.idleMs);
      this.idleTimer.unref();
    }
    return results;
  }

  /**
   * Makes `this.proc` a live process for `req.key`, replacing one that is for another key, has
   * exited or reached a limit. Returns whether it started one.
   */
  private async ensureProcess(req: HotRenderRequest): Promise<boolean> {
    const current = this.proc;
    if (current) {
      const why = !current.alive
        ? `it exited (${describeExit(current.exit!)})`
        : current.key !== req.key
          ? 'the next frames belong to another job or file'
          : current.retireReason;
      if (why) {
        if (current.alive) this.options.log?.info(`restarting hot Blender (pid ${current.pid}): ${why}`);
        else if (!current.stopping) this.options.log?.warn(`hot Blender (pid ${current.pid}) ${why} while idle; starting a new one`);
        await this.stopProcess(why);
      }
    }
    if (this.proc) return false;
    this.proc = await this.start(req);
    return true;
  }

  /** Starts Blender on `req.blendPath` and waits until the driver says it is ready. */
  private async start(req: HotRenderRequest): Promise<HotProcess> {
    const { blender, threads } = this.options;
    const args = blenderArgs(req.blendPath);
    if (threads !== undefined) args.push('-t', String(threads));
    // A failing driver must end Blender with an error rather than leave it running idle.
    args.push('--python-exit-code', '1');
    // Lists missing textures and libraries as the file loads (see missing-files.ts).
    args.push('--python-expr', REPORT_MISSING_FILES_EXPR);
    for (const expr of req.startupExprs ?? []) args.push('--python-expr', expr);
    args.push('--python', this.options.script ?? HOT_RENDER_SCRIPT, '--', '--events-fd', String(EVENTS_FD));
    const commandLine = formatCommandLine(blender, args);
    this.options.log?.info(`starting hot Blender: ${commandLine}`);
    req.onLine?.(`# ${new Date().toISOString()} $ ${commandLine}`);

    // detached: Blender leads its own process group, so a kill reaches whatever it starts.
    const child = spawn(blender, args, { detached: true, shell: false, stdio: ['pipe', 'pipe', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(new HotBlenderError('exited', `starting ${commandLine}: ${err.message}`)));
    });
    this.startedCount++;
    const proc = new HotProcess(req.key, child);
    proc.sink = req.onLine;
    const ready = await proc.next((event) => event.event === 'ready', req.signal);
    if ('aborted' in ready) {
      await proc.kill();
      throw new HotBlenderError('aborted', 'starting Blender was aborted', { tail: [...proc.tail] });
    }
    if ('exited' in ready) {
      // Typically a file Blender cannot load: its own error is in the tail.
      throw new HotBlenderError('exited', `Blender exited before it was ready (${describeExit(proc.exit!)})`, {
        exitCode: proc.exit!.code,
        signal: proc.exit!.signal,
        tail: [...proc.tail],
      });
    }
    const info = ready.event;
    this.options.log?.info(
      `hot Blender pid ${proc.pid} ready on ${req.blendPath}` +
        (info.sequential ? `; unbaked simulation (${(info.unbaked ?? []).join(', ')}): frames are stepped in order from the scene start` : ''),
    );
    return proc;
  }

  private async stopProcess(why: string): Promise<void> {
    clearTimeout(this.idleTimer);
    const proc = this.proc;
    this.proc = null;
    if (!proc) return;
    if (proc.alive) this.options.log?.info(`stopping hot Blender pid ${proc.pid}: ${why}`);
    await proc.stop();
  }

  private async killProcess(): Promise<void> {
    clearTimeout(this.idleTimer);
    const proc = this.proc;
    this.proc = null;
    await proc?.kill();
  }
}

function describeFrames(frames: number[]): string {
  return frames.length === 1 ? String(frames[0]) : `${frames[0]}-${frames.at(-1)}`;
}

function describeExit(exit: { code: number | null; signal: NodeJS.Signals | null }): string {
  return exit.signal ? `signal ${exit.signal}` : `exit ${exit.code}`;
}

/** Calls `onLine` for every line of `stream` (\n, \r\n or a lone \r, as Blender redraws progress). */
function splitLines(stream: Readable, onLine: (line: string) => void): void {
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const parts = (partial + chunk).split(/\r\n|\r|\n/);
    partial = parts.pop()!;
    for (const line of parts) onLine(line);
  });
  stream.on('end', () => {
    if (partial !== '') onLine(partial);
    partial = '';
  });
  stream.on('error', () => {});
}
