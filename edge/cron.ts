/**
 * Work that must not wait for a request to happen by: run by the Cron Trigger (wrangler.toml
 * `[triggers]`, every minute). Each sweep is bounded per run and picks up where the last left off,
 * so a large backlog drains over several runs instead of overrunning one.
 */
import type { Env } from './env.ts';

/** One sweep: named for the log, bounded in what it touches per run. */
interface Sweep {
  name: string;
  run(env: Env, now: number): Promise<unknown>;
}

const SWEEPS: Sweep[] = [];

/** Runs every sweep; one that fails is logged and does not stop the others. */
export async function runScheduledWork(env: Env, now: number): Promise<void> {
  for (const sweep of SWEEPS) {
    try {
      await sweep.run(env, now);
    } catch (err) {
      console.error(`cron sweep ${sweep.name} failed:`, err);
    }
  }
}
