/**
 * The exit statuses of every `farm` command, and the one place that turns an error into its
 * status and a message that says what to do. Documented in docs/cli.md ("Exit statuses").
 */
import { FarmApiError } from '../protocol/http-client.ts';

export const EXIT = {
  ok: 0,
  /** `watch`: the job ended failed or canceled; `submit`: Blender could not read the .blend; anything unforeseen. */
  failed: 1,
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

/** The exit status for an error, and the text to print: the cause and what to do about it. */
export function explain(err: unknown): { code: number; message: string } {
  if (err instanceof UsageError) return { code: EXIT.usage, message: err.message };
  if (err instanceof IntegrityError) return { code: EXIT.integrity, message: err.message };
  if (err instanceof FarmApiError) {
    if (err.status === null) return { code: EXIT.unreachable, message: `${err.message} (--master, or FARM_MASTER_URL)` };
    if (err.status === 401 || err.status === 403) {
      return { code: EXIT.auth, message: `${err.message} (pass --token TOKEN or set FARM_TOKEN)` };
    }
    if (err.status === 404) return { code: EXIT.notFound, message: err.message };
    if (err.status === 429) return { code: EXIT.unreachable, message: `${err.message} (the master is rate limiting this token; try again in a minute)` };
    if (err.retryable) return { code: EXIT.unreachable, message: `the master failed: ${err.message}; try again, and look at its log if it keeps failing` };
    return { code: EXIT.refused, message: err.message };
  }
  return { code: EXIT.failed, message: (err as Error)?.message ?? String(err) };
}
