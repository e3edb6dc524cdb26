/**
 * Hot Blender: one long-lived Blender process that renders a job's successive frames without
 * loading the .blend again. Starting Blender, loading the file and (for a live simulation)
 * re-simulating from the first frame is what one process per frame or per chunk pays again
 * and again; a hot process pays it once per job.
 *
 * The process runs `hot_render.py` (next to this file) inside
 * `blender -b --factory-startup --disable-autoexec -noaudio FILE [-t N] --python hot_render.py`,
 * takes one JSON command per line on stdin and answers with JSON events on fd 3, a pipe of its
 * own (Blender's stdout carries its own progress lines, which go to the task's log as before).
 *
 * One process at a time, keyed by what it was started for (the job, the blend's SHA-256 and the
 * render settings). It is replaced when a frame asks for another key, after it exited or crashed,
 * after `maxFrames` frames, once its resident memory after a frame passed `maxMemMb`, and it is
 * stopped after `idleMs` without work so an idle node does not hold Blender's memory.
 * Renders are serialised: a call waits for the one before it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Readable, Writable } from 'node:stream';
import { formatCommandLine } from '../process/run-process.ts';
import type { Logger } from '../logger.ts';
import { REPORT_MISSING_FILES_EXPR } from './missing-files.ts';

/** The driver that runs inside Blender. */
export const HOT_RENDER_SCRIPT = fileURLToPath(new URL('./hot_render.py', import.meta.url));
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
  /** Restart the process when its resident memory after a frame is above this (MB); 0 = never. */
  maxMemMb: number;
  /** Stop the process after this long without a render; 0 = keep it. */
  idleMs: number;
  log?: Logger;
  /** The driver script; tests may point elsewhere. */
  script?: string;
}

export interface HotFrameRequest {
  /** What the process is for (job, blend SHA-256, settings): another key starts another process. */
  key: string;
  /** Absolute path of the .blend. */
  blendPath: string;
  frame: number;
  /** Absolute output pattern with # for the frame number, as for `-o`. */
  outputPattern: string;
  /** Blender's output lines while this frame is rendered (with the start-up lines if it started Blender). */
  onLine?: (line: string) => void;
  /** Aborting stops the process (its whole process group) and rejects with kind 'aborted'. */
  signal?: AbortSignal;
}

export interface HotFrameResult {
  frame: number;
  /** The saved file: the pattern's # run replaced by the zero-padded frame, plus the extension. */
  path: string;
  /** Wall time of this call from the node's side, including stepping and any start-up. */
  wallMs: number;
  /** Time Blender spent in the render operator. */
  renderSeconds: number;
  /** Time spent evaluating frames before this one (simulation stepping). */
  stepSeconds: number;
  /** Blender's resident and peak resident memory after the frame, MB (null if unknown). */
  rssMb: number | null;
  peakRssMb: number | null;
  pid: number;
  /** True when this call had to start Blender (and load the file). */
  started: boolean;
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
  readonly tail: string[] = [];
  sink: ((line: string) => void) | undefined;
  private listeners = new Set<(event: HotEvent) => void>();

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
      for (const listener of [...this.listeners]) listener(event);
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
   * Waits for the first event `pick` accepts (it returns a value), the process's exit, or the
   * abort of `signal`, whichever comes first.
   */
  async waitFor<T>(pick: (event: HotEvent) => T | undefined, signal?: AbortSignal): Promise<{ value: T } | { exited: true } | { aborted: true }> {
    let listener!: (event: HotEvent) => void;
    let onAbort!: () => void;
    try {
      return await new Promise((resolve) => {
        listener = (event) => {
          const value = pick(event);
          if (value !== undefined) resolve({ value });
        };
        this.listeners.add(listener);
        onAbort = () => resolve({ aborted: true });
        if (signal?.aborted) onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        void this.exited.then(() => {
          // Events the driver wrote just before exiting may still be in the pipe: let them land.
          setTimeout(() => resolve({ exited: true }), 50);
        });
      });
    } finally {
      this.listeners.delete(listener);
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
  private proc: HotProcess | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private idleTimer: NodeJS.Timeout | undefined;
  private commandSeq = 0;
  /** Processes started so far, for logs and tests. */
  startedCount = 0;

  constructor(options: HotBlenderOptions) {
    this.options = options;
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
   * Renders one frame in the hot process for `req.key`, starting or replacing the process
   * first when needed. Calls are serialised. Frames of one key are best asked for in
   * ascending order: a frame before the last one may mean re-simulating from the start.
   */
  renderFrame(req: HotFrameRequest): Promise<HotFrameResult> {
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

  private async renderNow(req: HotFrameRequest): Promise<HotFrameResult> {
    clearTimeout(this.idleTimer);
    const startedMs = performance.now();
    if (req.signal?.aborted) throw new HotBlenderError('aborted', 'the render was aborted before it started');

    const current = this.proc;
    if (current) {
      const why = !current.alive
        ? `it exited (${describeExit(current.exit!)})`
        : current.key !== req.key
          ? 'the next frame belongs to another job or file'
          : current.retireReason;
      if (why) {
        if (current.alive) this.options.log?.info(`restarting hot Blender (pid ${current.pid}): ${why}`);
        else if (!current.stopping) this.options.log?.warn(`hot Blender (pid ${current.pid}) ${why} while idle; starting a new one`);
        await this.stopProcess(why);
      }
    }

    let started = false;
    if (!this.proc) {
      this.proc = await this.start(req);
      started = true;
    }
    const proc = this.proc;
    proc.sink = req.onLine;

    const id = String(++this.commandSeq);
    proc.send({ cmd: 'render', id, frames: [req.frame], output: req.outputPattern });
    const outcome = await proc.waitFor((event) => (event.id === id && (event.event === 'frame_saved' || event.event === 'error') ? event : undefined), req.signal);

    if ('aborted' in outcome) {
      await this.killProcess();
      throw new HotBlenderError('aborted', `rendering frame ${req.frame} was aborted`, { tail: [...proc.tail] });
    }
    if ('exited' in outcome) {
      this.proc = null;
      const exit = proc.exit!;
      throw new HotBlenderError('exited', `Blender exited while rendering frame ${req.frame} (${describeExit(exit)})`, {
        exitCode: exit.code,
        signal: exit.signal,
        tail: [...proc.tail],
      });
    }
    const event = outcome.value;
    if (event.event === 'error') {
      // The scene may be half-evaluated: the next frame gets a fresh Blender.
      const tail = [...proc.tail, `Error: ${event.message ?? 'unknown error'}`];
      await this.stopProcess(`frame ${req.frame} failed`);
      throw new HotBlenderError('render_error', `Blender could not render frame ${req.frame}: ${event.message}`, { tail });
    }

    proc.framesRendered++;
    proc.lastRssMb = event.rss_mb ?? null;
    const { maxFrames, maxMemMb, idleMs } = this.options;
    if (maxFrames > 0 && proc.framesRendered >= maxFrames) proc.retireReason = `it rendered ${proc.framesRendered} frames (--hot-max-frames ${maxFrames})`;
    else if (maxMemMb > 0 && proc.lastRssMb !== null && proc.lastRssMb > maxMemMb) {
      proc.retireReason = `it holds ${Math.round(proc.lastRssMb)} MB after a frame (--hot-max-mem-mb ${maxMemMb})`;
    }
    if (idleMs > 0) {
      this.idleTimer = setTimeout(() => void this.dispose(), idleMs);
      this.idleTimer.unref();
    }
    return {
      frame: req.frame,
      path: event.path!,
      wallMs: Math.round(performance.now() - startedMs),
      renderSeconds: event.render_seconds ?? 0,
      stepSeconds: event.step_seconds ?? 0,
      rssMb: event.rss_mb ?? null,
      peakRssMb: event.peak_rss_mb ?? null,
      pid: proc.pid,
      started,
    };
  }

  /** Starts Blender on `req.blendPath` and waits until the driver says it is ready. */
  private async start(req: HotFrameRequest): Promise<HotProcess> {
    const { blender, threads } = this.options;
    const args = ['-b', '--factory-startup', '--disable-autoexec', '-noaudio', req.blendPath];
    if (threads !== undefined) args.push('-t', String(threads));
    // A failing driver must end Blender with an error rather than leave it running idle.
    args.push('--python-exit-code', '1');
    // Lists missing textures and libraries as the file loads (see missing-files.ts).
    args.push('--python-expr', REPORT_MISSING_FILES_EXPR);
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
    const ready = await proc.waitFor((event) => (event.event === 'ready' ? event : undefined), req.signal);
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
    const info = ready.value;
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
