/**
 * Runs one child process the way a render node needs: argument list, no shell, its own
 * process group, stdout and stderr merged into lines, and a cancel that takes down
 * everything the child started.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';

/** Lines kept for error reports when the caller does not say. */
const DEFAULT_TAIL_LINES = 100;
/** Time a process group gets to exit after SIGTERM before it is sent SIGKILL. */
const DEFAULT_KILL_GRACE_MS = 5000;
/**
 * Once the child itself has exited, how long to keep reading its pipes. A background
 * grandchild can hold them open forever; its output after that point is not worth a hang.
 */
const STDIO_DRAIN_MS = 2000;
/** How often to check whether a signalled process group has gone. */
const GROUP_POLL_MS = 25;
/** After SIGKILL, how long to wait for the group to vanish before giving up on it. */
const AFTER_SIGKILL_WAIT_MS = 2000;

export interface RunProcessOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Called once the process has started (the place to log the command line). */
  onStart?: (pid: number) => void;
  /** Called for every line of merged stdout and stderr, without its line ending. */
  onLine?: (line: string) => void;
  /** How many of the last lines to return in `tail`. */
  tailLines?: number;
  /** Aborting it terminates the child's whole process group. */
  signal?: AbortSignal;
  /** Grace period between SIGTERM and SIGKILL on abort. */
  killGraceMs?: number;
  /** Append the command line and every output line to this file, creating directories. */
  logPath?: string;
}

export interface ProcessResult {
  /** Null when the process was ended by a signal. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** The last `tailLines` lines of output, oldest first. */
  tail: string[];
  durationMs: number;
  /** True when the caller's AbortSignal ended (or prevented) the run. */
  aborted: boolean;
}

/**
 * Runs `cmd` with `args` (no shell) in a new process group, feeding each output line to
 * `onLine`. Resolves once the process has exited, whatever its exit code; rejects only when
 * the process cannot be started or the log file cannot be opened.
 */
export async function runProcess(cmd: string, args: readonly string[], options: RunProcessOptions = {}): Promise<ProcessResult> {
  const tailLines = options.tailLines ?? DEFAULT_TAIL_LINES;
  const killGraceMs = options.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
  const commandLine = formatCommandLine(cmd, args);
  const log = options.logPath ? await openLog(options.logPath) : undefined;
  log?.write(`# ${new Date().toISOString()} $ ${commandLine}\n`);

  const tail: string[] = [];
  const emit = (line: string): void => {
    tail.push(line);
    if (tail.length > tailLines) tail.shift();
    log?.write(`${line}\n`);
    options.onLine?.(line);
  };

  if (options.signal?.aborted) {
    log?.write('# not started: aborted before start\n');
    await closeLog(log);
    return { exitCode: null, signal: null, tail, durationMs: 0, aborted: true };
  }

  const startedMs = performance.now();
  // detached: the child calls setsid(), so its pid is also its process group id and
  // signalling -pid reaches everything it spawns (Blender's helpers, a wrapper's children).
  const child = spawn(cmd, args, {
    cwd: options.cwd,
    env: options.env,
    detached: true,
    shell: false,
    stdio: ['ignore', 'pipe', 'pipe'],
  });

  let aborted = false;
  let killTimer: NodeJS.Timeout | undefined;
  let sigkillSent = false;
  const signalGroup = (sig: NodeJS.Signals): void => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, sig);
    } catch (err) {
      // ESRCH: the group is already gone, which is what we wanted.
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  };
  const sendSigkill = (): void => {
    sigkillSent = true;
    signalGroup('SIGKILL');
  };
  const onAbort = (): void => {
    if (aborted) return;
    aborted = true;
    log?.write(`# aborted: SIGTERM to process group, SIGKILL after ${killGraceMs} ms\n`);
    signalGroup('SIGTERM');
    killTimer = setTimeout(sendSigkill, killGraceMs);
  };

  const splitters = [child.stdout, child.stderr].map((stream) => readLines(stream, emit));

  let exit: { code: number | null; signal: NodeJS.Signals | null };
  try {
    exit = await new Promise((resolve, reject) => {
      child.once('error', (err) => reject(new Error(`starting ${commandLine}: ${err.message}`, { cause: err })));
      child.once('exit', (code, sig) => resolve({ code, signal: sig }));
      child.once('spawn', () => options.onStart?.(child.pid!));
      // Registered after spawn so an abort can always find a pid to signal.
      options.signal?.addEventListener('abort', onAbort, { once: true });
    });
  } catch (err) {
    options.signal?.removeEventListener('abort', onAbort);
    await closeLog(log);
    throw err;
  }

  // Keep reading what the pipes still hold, but not forever (see STDIO_DRAIN_MS).
  const drained = Promise.all(splitters.map((s) => s.done));
  const drainTimer = setTimeout(() => {
    for (const s of splitters) s.stop();
  }, STDIO_DRAIN_MS);
  await drained;
  clearTimeout(drainTimer);

  options.signal?.removeEventListener('abort', onAbort);
  if (aborted && child.pid !== undefined) {
    // The leader is gone but members that ignore SIGTERM may not be. Wait for them until
    // the grace timer sends SIGKILL, so a cancel never leaves a stray render running.
    const pgid = child.pid;
    await waitUntil(() => !groupExists(pgid) || sigkillSent, Infinity);
    // Unreaped zombies keep a group "existing", so give up on it after a bounded wait.
    if (sigkillSent) await waitUntil(() => !groupExists(pgid), AFTER_SIGKILL_WAIT_MS);
  }
  clearTimeout(killTimer);

  const durationMs = Math.round(performance.now() - startedMs);
  log?.write(`# exit code ${exit.code} signal ${exit.signal} after ${durationMs} ms${aborted ? ' (aborted)' : ''}\n`);
  await closeLog(log);
  return { exitCode: exit.code, signal: exit.signal, tail, durationMs, aborted };
}

/**
 * Formats a command and its arguments as one line that can be pasted into a POSIX shell
 * to rerun it, quoting only the arguments that need it.
 */
export function formatCommandLine(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map(shellQuote).join(' ');
}

function shellQuote(word: string): string {
  if (word === '') return "''";
  // Characters no POSIX shell treats specially anywhere in a word.
  if (/^[A-Za-z0-9_\-+=.,/:@%]+$/.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

interface LineReader {
  done: Promise<void>;
  stop: () => void;
}

/**
 * Splits a stream into lines on \n, \r\n and lone \r (progress bars redraw with \r), and
 * flushes a final line that has no line ending. Each stream keeps its own partial line,
 * so stdout and stderr never get spliced into one line.
 */
function readLines(stream: Readable, emit: (line: string) => void): LineReader {
  let partial = '';
  // A chunk ending in \r may be the first half of \r\n.
  let lastWasCr = false;
  let finished = false;
  stream.setEncoding('utf8');

  const done = new Promise<void>((resolve) => {
    const finish = (): void => {
      if (finished) return;
      finished = true;
      if (partial !== '') emit(partial);
      partial = '';
      resolve();
    };
    stream.on('data', (chunk: string) => {
      let start = 0;
      for (let i = 0; i < chunk.length; i++) {
        const ch = chunk[i];
        if (ch === '\n' && lastWasCr) {
          // The \n of a \r\n whose \r already ended the line.
          start = i + 1;
          lastWasCr = false;
          continue;
        }
        lastWasCr = false;
        if (ch === '\n' || ch === '\r') {
          emit(partial + chunk.slice(start, i));
          partial = '';
          start = i + 1;
          lastWasCr = ch === '\r';
        }
      }
      partial += chunk.slice(start);
    });
    stream.once('end', finish);
    stream.once('close', finish);
    stream.once('error', finish);
  });
  return {
    done,
    stop: () => {
      stream.destroy();
    },
  };
}

function groupExists(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadlineMs = performance.now() + timeoutMs;
  while (!condition() && performance.now() < deadlineMs) {
    await new Promise((resolve) => setTimeout(resolve, GROUP_POLL_MS));
  }
}

async function openLog(logPath: string): Promise<WriteStream> {
  try {
    await mkdir(dirname(logPath), { recursive: true });
    const stream = createWriteStream(logPath, { flags: 'a' });
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => resolve());
      stream.once('error', reject);
    });
    // A later write error (disk full) must not crash the node; the run itself matters more.
    stream.on('error', () => {});
    return stream;
  } catch (err) {
    throw new Error(`opening process log ${logPath}: ${(err as Error).message}`, { cause: err });
  }
}

async function closeLog(log: WriteStream | undefined): Promise<void> {
  if (!log) return;
  await new Promise<void>((resolve) => log.end(resolve));
}
