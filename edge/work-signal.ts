/**
 * Wakes nodes that wait in a long-polling `get_job` when work appears (a submission, a released
 * or failed task). Waiters live in this isolate's memory: with `wrangler dev` there is one
 * isolate, so pickup is immediate. A deployed master may run several isolates, so a waiter also
 * re-checks D1 every RECHECK_MS: the worst case is that delay, and an idle node costs one query
 * per RECHECK_MS instead of one request per poll.
 */
const waiters = new Set<() => void>();
export const RECHECK_MS = 1_000;

/** Wakes every waiting `get_job`. */
export function wakeWaiters(): void {
  for (const wake of [...waiters]) wake();
}

/** Resolves when woken, after `ms`, or when `signal` aborts (the client went away). */
export function waitForWork(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      waiters.delete(done);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    waiters.add(done);
    signal?.addEventListener('abort', done);
  });
}

import { DurableObject } from 'cloudflare:workers';
import type { Env } from './env.ts';
/** Placeholder, replaced by the wake-up Durable Object. */
export class WorkSignal extends DurableObject {}

/** Wakes every render node waiting for work, on any isolate (placeholder: wakes this isolate's). */
export async function wakeWaitingNodes(_env: Env): Promise<void> {
  wakeWaiters();
}
