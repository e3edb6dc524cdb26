/**
 * The wake-up Durable Object itself, apart from its callers (edge/work-signal.ts) so that code
 * which runs outside workerd (tests that list the app's routes in Node) never imports
 * `cloudflare:workers`. Exported to the runtime by edge/index.ts.
 */
import { DurableObject } from 'cloudflare:workers';
import { MAX_WAIT_MS } from '../protocol/schemas.ts';
import type { Env } from './env.ts';

/**
 * The wake-up object. Its state is memory only: the generation and the waiting calls. Losing it
 * (the object restarts) is harmless: the generation restarts under a new epoch, which differs from
 * every generation handed out before, so every wait that names an old one returns at once and its
 * poll claims again.
 */
export class WorkSignal extends DurableObject<Env> {
  /** Differs between incarnations of the object, so generations never repeat across restarts. */
  #epoch = crypto.randomUUID();
  #count = 0;
  #waiters = new Set<() => void>();

  /** The current generation: read by a poll before it claims. */
  generation(): string {
    return `${this.#epoch}:${this.#count}`;
  }

  /** Work may be claimable: moves the generation on and releases every waiting call. */
  notify(): string {
    this.#count++;
    const waiting = [...this.#waiters];
    this.#waiters.clear();
    for (const release of waiting) release();
    return this.generation();
  }

  /**
   * Resolves with the generation once it differs from `since` (at once if it already does, so a
   * notification between the caller's claim and this call is not missed), or after `ms`.
   * `since` null (the caller could not read one) returns at once.
   */
  wait(since: string | null, ms: number): Promise<string> {
    const current = this.generation();
    if (since !== current) return Promise.resolve(current);
    return new Promise((resolve) => {
      const release = () => {
        clearTimeout(timer);
        this.#waiters.delete(release);
        resolve(this.generation());
      };
      const timer = setTimeout(release, Math.max(0, Math.min(ms, MAX_WAIT_MS)));
      this.#waiters.add(release);
    });
  }
}
