/**
 * Wakes render nodes that wait in a long-polling `get_job` when work may have appeared (a
 * submission, a resumed, re-prioritised or requeued job, a released or failed task, a node
 * enabled, an expired lease found by the cron sweep).
 *
 * A deployed master runs many isolates, so the waiting happens in ONE Durable Object, `WorkSignal`
 * (a single global instance), which every isolate reaches: a waiting `get_job` holds a Workers RPC
 * call to it (`wait`) open until some request anywhere calls `notify` or the wait runs out. While
 * it waits, a node costs no D1 query at all (see docs/design.md, Waiting for work).
 *
 * A generation counter closes the gap between a poll's empty claim and the start of its wait:
 * the poll reads the generation BEFORE it claims and waits "since" that generation, so a
 * notification that lands between the claim and the wait makes the wait return at once.
 *
 * Held RPC promises rather than hibernatable WebSockets: a wait lasts at most 30 s (`wait_ms`),
 * the Worker side is billed by CPU time and not by wall time, and one object alive while any
 * node waits costs less than the included duration of the Workers paid plan. The Hibernation API
 * would save that duration but needs a WebSocket per waiting request between the Worker and the
 * object, with its own upgrade and framing, for no gain in latency.
 */
import type { Env } from './env.ts';
import type { WorkSignal } from './work-signal-object.ts';

/**
 * While the object cannot be reached (a deploy resets it, a transient error), a waiting poll
 * falls back to re-checking D1 this often.
 */
const UNREACHABLE_RECHECK_MS = 1_000;

function workSignal(env: Env): DurableObjectStub<WorkSignal> {
  return env.WORK_SIGNAL.get(env.WORK_SIGNAL.idFromName('global'));
}

/**
 * Wakes every render node waiting for work, on every isolate. Never rejects: a lost wake-up
 * delays pickup until the node's next poll (at most its `wait_ms`), it loses no work.
 */
export async function wakeWaitingNodes(env: Env): Promise<void> {
  try {
    await workSignal(env).notify();
  } catch (err) {
    console.warn('waking the nodes waiting for work (WorkSignal.notify) failed; they find the work at their next poll:', err);
  }
}

/**
 * The generation to wait from, read before a claim; null when the object could not be reached
 * (then the first wait returns at once and the poll claims again).
 */
export async function readGeneration(env: Env): Promise<string | null> {
  try {
    return await workSignal(env).generation();
  } catch (err) {
    console.warn('reading the WorkSignal generation failed:', err);
    return null;
  }
}

/**
 * How often a waiting poll looks whether it is still wanted (a newer poll of the same node took
 * over, claim-redelivery.ts). A timer of its own: that newer request cannot settle a promise of
 * this one (workerd refuses I/O across requests), and it costs no query.
 */
const STILL_WANTED_CHECK_MS = 1_000;

export interface WaitOptions {
  /** The request's: aborts when the client went away. */
  signal?: AbortSignal;
  /** False once the wait is no longer wanted; looked at every STILL_WANTED_CHECK_MS. */
  stillWanted?: () => boolean;
}

/**
 * Waits until work may be there: resolves with the new generation when woken, with `since`
 * unchanged when `ms` passed, the client went away or the poll is no longer wanted, and with
 * null when the object could not be reached (after a short pause, so the caller re-checks D1 as
 * it did before the object existed).
 */
export async function waitForWork(env: Env, since: string | null, ms: number, options: WaitOptions = {}): Promise<string | null> {
  const { signal, stillWanted = () => true } = options;
  if (signal?.aborted || !stillWanted()) return since;
  let checker: ReturnType<typeof setInterval> | undefined;
  let onAbort = () => {};
  const stopped = new Promise<string | null>((resolve) => {
    onAbort = () => resolve(since);
    signal?.addEventListener('abort', onAbort);
    checker = setInterval(() => {
      if (!stillWanted()) resolve(since);
    }, STILL_WANTED_CHECK_MS);
  });
  const waiting = Promise.resolve(workSignal(env).wait(since, ms));
  // The call may still settle after the poll stopped waiting; nobody reads it then.
  waiting.catch(() => {});
  try {
    return await Promise.race([waiting, stopped]);
  } catch (err) {
    console.warn(`waiting on WorkSignal failed; re-checking D1 in ${UNREACHABLE_RECHECK_MS} ms:`, err);
    await Promise.race([new Promise((resolve) => setTimeout(resolve, Math.min(ms, UNREACHABLE_RECHECK_MS))), stopped]);
    return null;
  } finally {
    clearInterval(checker);
    signal?.removeEventListener('abort', onAbort);
  }
}
