/**
 * Turns a failed Blender run (exit status and the tail of its output) into a reason the
 * master can act on and one line a person can read. Messages quote Blender's own words.
 */
import { parseBlenderLine } from './output-parser.ts';

type BlenderFailureReason = 'corrupt_file' | 'newer_blender' | 'no_camera' | 'out_of_memory' | 'killed' | 'crashed' | 'missing_output' | 'unknown';

export interface BlenderFailure {
  reason: BlenderFailureReason;
  message: string;
}

export interface BlenderRunOutcome {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** The last lines of Blender's merged output. */
  tail: readonly string[];
}

/** Signals that mean the process broke rather than being told to stop. */
const CRASH_SIGNALS = new Set<string>(['SIGSEGV', 'SIGBUS', 'SIGILL', 'SIGFPE', 'SIGABRT']);
const STOP_SIGNALS = new Set<string>(['SIGKILL', 'SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT']);
/** A shell wrapper reports a child killed by signal N as exit 128 + N. */
const SIGNAL_BY_SHELL_EXIT: Record<number, NodeJS.Signals> = {
  129: 'SIGHUP',
  130: 'SIGINT',
  131: 'SIGQUIT',
  132: 'SIGILL',
  134: 'SIGABRT',
  135: 'SIGBUS',
  136: 'SIGFPE',
  137: 'SIGKILL',
  139: 'SIGSEGV',
  143: 'SIGTERM',
};

const CORRUPT = /Missing DNA block|File format is not supported|Failed to read blend file/;
const NOT_A_BLEND = /not a blend file/;
const NO_CAMERA = /no camera|No camera found/i;
const OUT_OF_MEMORY = /out of memory|Malloc returns null|std::bad_alloc|Cannot allocate memory/i;
const CANNOT_SAVE = /cannot save|Cannot open file for writing/i;
const SKIPPED_EXISTING = /skipping existing frame/;
const SCRIPT_FAILED = /^Error: script failed/;

/**
 * Classifies why Blender failed. Rules, first match wins: Blender's own error text
 * (corrupt file, newer file format, no camera, out of memory), then the way it ended
 * (crash signal, kill signal), then output problems; anything else is 'unknown' with
 * Blender's last error line.
 */
export function classifyBlenderFailure(outcome: BlenderRunOutcome): BlenderFailure {
  const { tail } = outcome;
  const signal = outcome.signal ?? (outcome.exitCode === null ? null : (SIGNAL_BY_SHELL_EXIT[outcome.exitCode] ?? null));
  const status = describeStatus(outcome);
  const errors = tail.flatMap((line) => {
    const event = parseBlenderLine(line);
    return event?.kind === 'error' ? [event.message] : [];
  });
  const find = (pattern: RegExp): string | undefined =>
    errors.find((message) => pattern.test(message)) ?? tail.map((l) => l.trim()).find((l) => pattern.test(l));

  const notABlend = find(NOT_A_BLEND);
  if (notABlend) {
    // Blender 3.4 says this for a file whose header it cannot parse; with a valid-looking
    // "BLENDER" magic (the master checks it on upload) that is the header of Blender 5.0+.
    return {
      reason: 'newer_blender',
      message: `the .blend looks saved by a newer Blender than this node's: Blender says "${notABlend}" (${status})`,
    };
  }
  const corrupt = find(CORRUPT);
  if (corrupt) {
    return { reason: 'corrupt_file', message: `corrupt .blend: Blender says "${corrupt}" (${status}); upload the file again` };
  }
  const noCamera = find(NO_CAMERA);
  if (noCamera) {
    return { reason: 'no_camera', message: `the scene has no active camera: Blender says "${noCamera}" (${status})` };
  }
  const oom = find(OUT_OF_MEMORY);
  if (oom) {
    return { reason: 'out_of_memory', message: `out of memory: Blender says "${oom}" (${status})` };
  }
  if (tail.some((line) => line.trim() === 'Killed')) {
    // Only a wrapper shell prints "Killed"; an unexplained SIGKILL on a render node is
    // almost always the kernel's OOM killer.
    return { reason: 'out_of_memory', message: `Blender was killed with SIGKILL, most likely by the kernel's out-of-memory killer (${status})` };
  }

  if (signal !== null && CRASH_SIGNALS.has(signal)) {
    const report = errors.find((message) => message.startsWith('Blender crashed'));
    const where = report ? ` (${report.replace('Blender crashed, report ', 'crash report ')})` : '';
    return {
      reason: 'crashed',
      message: `Blender crashed with ${signal}${where}; a .blend saved by a newer Blender is a common cause (${status})`,
    };
  }
  if (signal !== null && STOP_SIGNALS.has(signal)) {
    const hint = signal === 'SIGKILL' ? '; if nobody cancelled it, the kernel may have run out of memory' : '';
    return { reason: 'killed', message: `Blender was stopped by ${signal}${hint} (${status})` };
  }

  const cannotSave = find(CANNOT_SAVE);
  if (cannotSave) {
    return { reason: 'missing_output', message: `Blender could not write the frame: "${cannotSave}" (${status})` };
  }
  const skipped = find(SKIPPED_EXISTING);
  if (skipped) {
    return {
      reason: 'missing_output',
      message: `Blender did not render a frame because its file already existed (the scene has Overwrite off): "${skipped}" (${status})`,
    };
  }
  if (outcome.exitCode === 0 && outcome.signal === null) {
    const saved = tail.some((line) => parseBlenderLine(line)?.kind === 'saved');
    return {
      reason: 'missing_output',
      message: saved ? `Blender exited 0 but some expected frames were not saved (${status})` : `Blender exited 0 without saving any frame (${status})`,
    };
  }

  const scriptFailed = tail.find((line) => SCRIPT_FAILED.test(line));
  if (scriptFailed) {
    return { reason: 'unknown', message: `a --python-expr failed: ${pythonException(tail) ?? scriptFailed} (${status})` };
  }
  const last =
    errors.at(-1) ??
    tail
      .map((l) => l.trim())
      .filter((l) => l !== '' && l !== 'Blender quit')
      .at(-1);
  return {
    reason: 'unknown',
    message: last ? `Blender failed: "${last}" (${status})` : `Blender failed without an error message (${status})`,
  };
}

function describeStatus({ exitCode, signal }: BlenderRunOutcome): string {
  if (signal) return `signal ${signal}`;
  return exitCode === null ? 'no exit status' : `exit ${exitCode}`;
}

/** The "SomeError: what" line of the last Python traceback in the tail. */
function pythonException(tail: readonly string[]): string | undefined {
  const start = tail.findLastIndex((line) => line.includes('Traceback (most recent call last)'));
  if (start < 0) return undefined;
  return tail.slice(start + 1).find((line) => /^[A-Za-z_][\w.]*(?:Error|Exception)\b/.test(line));
}
