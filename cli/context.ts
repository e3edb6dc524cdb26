/**
 * What every `farm` command shares: the typed client built from the global `--master` and
 * `--token`, and the wrapper that turns a command's errors into its exit status (exit-codes.ts).
 */
import type { Command } from 'commander';
import { FarmApiError, FarmClient } from '../protocol/client.ts';
import { explain, UsageError } from './exit-codes.ts';

interface GlobalOptions {
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
      onRetry: (what, error, delayMs) => process.stderr.write(`farm: ${what}: ${retryReason(error)}; retrying in ${(delayMs / 1000).toFixed(1)} s\n`),
    });
  } catch (err) {
    throw new UsageError(`${(err as Error).message}: pass --master http://host:8000 or set FARM_MASTER_URL`);
  }
}

/** Why a try failed, in a few words. */
function retryReason(error: Error): string {
  if (!(error instanceof FarmApiError)) return error.message;
  return error.status === null ? 'no answer from the master' : `HTTP ${error.status}`;
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
