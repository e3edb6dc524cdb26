import type { Context } from 'hono';
import type { AppEnv } from './app-env.ts';

/** The request's execution context, for work that must outlive the response; null when there is none (a test calling app.fetch directly). */
export function executionContext(c: Context<AppEnv>): { waitUntil(promise: Promise<unknown>): void } | null {
  try {
    return c.executionCtx;
  } catch {
    return null;
  }
}
