/**
 * What every `farm` command shares: the typed client built from the global `--master` and
 * `--token`, the exit codes, and one place that turns errors into a message that says what to do.
 */
import type { Command } from 'commander';
import { FarmApiError, FarmClient } from '../protocol/client.ts';

/** Exit statuses of `farm`, documented in docs/cli.md ("The `farm` CLI"). */
export const EXIT = {
  ok: 0,
  /** `watch`: the job ended failed or canceled. */
  jobFailed: 1,
  /** Bad arguments; the message says which. */
  usage: 2,
  /** The master could not be reached, or answered 5xx: trying again later may work. */
  unreachable: 3,
  /** No such job, node, frame or log. */
  notFound: 4,
  /** The master refused the request (400, 409, 413, 415...): its message says why. */
  refused: 5,
  /** A token is missing, wrong, or not allowed here (401, 403). */
  auth: 6,
  /** `download`: a file did not match the SHA-256 the master recorded for it. */
  integrity: 7,
  /** Interrupted (Ctrl-C). */
  interrupted: 130,
} as const;

/** A mistake in the command line; exit status 2. */
export class UsageError extends Error {}

/** Downloaded bytes that do not match their recorded hash; exit status 7. */
export class IntegrityError extends Error {}

export interface GlobalOptions {
  master: string;
  token?: string;
}

/** The client for the master the command line names. */
export function clientFor(command: Command): FarmClient {
  const global = command.optsWithGlobals() as GlobalOptions;
  try {
    return new FarmClient({
      baseUrl: global.master,
      token: global.token,
      onRetry: (what, error, delayMs) =>
        process.stderr.write(`farm: ${what}: ${error.status === null ? 'no answer from the master' : `HTTP ${error.status}`}; retrying in ${(delayMs / 1000).toFixed(1)} s\n`),
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** The exit status for an error, and the text to print: the cause and what to do about it. */
export function explain(err: unknown): { code: number; message: string } {
  if (err instanceof UsageError) return { code: EXIT.usage, message: err.message };
  if (err instanceof IntegrityError) return { code: EXIT.integrity, message: err.message };
  if (err instanceof FarmApiError) {
    if (err.status === null) return { code: EXIT.unreachable, message: err.message };
    if (err.status === 401 || err.status === 403) {
      return { code: EXIT.auth, message: `${err.message} (pass --token TOKEN or set FARM_TOKEN)` };
    }
    if (err.status === 404) return { code: EXIT.notFound, message: err.message };
    if (err.status === 429) return { code: EXIT.unreachable, message: `${err.message} (the master is rate limiting this token; try again in a minute)` };
    if (err.status >= 500) return { code: EXIT.unreachable, message: `the master failed: ${err.message}; try again, and look at its log if it keeps failing` };
    return { code: EXIT.refused, message: err.message };
  }
  // Errors of `farm submit`'s HTTP layer carry a status too.
  const status = (err as { status?: unknown }).status;
  if (typeof status === 'number') return explain(new FarmApiError(status, '', '', (err as Error).message));
  return { code: 1, message: (err as Error)?.message ?? String(err) };
}

/**
 * Wraps a command's action: errors are printed as `farm <command>: message` on stderr and set
 * the exit status; the action may return an exit status of its own.
 */
export function action<A extends unknown[]>(name: string, fn: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      const code = await fn(...args);
      if (typeof code === 'number') process.exitCode = code;
    } catch (err) {
      const { code, message } = explain(err);
      process.stderr.write(`farm ${name}: ${message}\n`);
      process.exitCode = code;
    }
  };
}

/** Prints a value as JSON on stdout (for `--json`). */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * A job id from the command line: the full id, or the first characters of one (at least 4, as
 * `farm list` shows 8), looked up among the newest 1000 jobs.
 */
export async function resolveJobId(client: FarmClient, text: string): Promise<string> {
  const value = text.trim().toLowerCase();
  if (UUID.test(value)) return value;
  if (!/^[0-9a-f-]{4,36}$/.test(value)) throw new UsageError(`"${text}" is not a job id (see farm list)`);
  const matches: string[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 5; page++) {
    const list = await client.listJobs({ limit: 200, cursor });
    for (const job of list.jobs) if (job.job_id.startsWith(value)) matches.push(job.job_id);
    if (!list.next_cursor) break;
    cursor = list.next_cursor;
  }
  if (matches.length === 1) return matches[0]!;
  if (matches.length === 0) throw new FarmApiError(404, 'GET', '/jobs', `no job id starts with ${value} (see farm list)`);
  throw new UsageError(`${value} matches ${matches.length} jobs (${matches.slice(0, 5).join(', ')}${matches.length > 5 ? ', …' : ''}): give more of the id`);
}

/** A node from the command line: its id, the start of its id, or its name. */
export async function resolveWorkerId(client: FarmClient, text: string): Promise<string> {
  const { workers } = await client.workers();
  const value = text.trim();
  const exact = workers.filter((w) => w.worker_id === value.toLowerCase() || w.name === value);
  const matches = exact.length > 0 ? exact : workers.filter((w) => value.length >= 4 && w.worker_id.startsWith(value.toLowerCase()));
  if (matches.length === 1) return matches[0]!.worker_id;
  if (matches.length === 0) throw new FarmApiError(404, 'GET', '/workers', `no node named or with an id starting with "${value}" (see farm nodes)`);
  throw new UsageError(`"${value}" matches ${matches.length} nodes (${matches.map((w) => `${w.name} ${w.worker_id}`).join(', ')}): use the node id`);
}
