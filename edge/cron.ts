/**
 * Work that must not wait for a request to happen by: run by the Cron Trigger (wrangler.toml
 * `[triggers]`, every minute). Each sweep is bounded per run and picks up where the last left off,
 * so a large backlog drains over several runs instead of overrunning one.
 */
import { abortStaleUploads } from './blob-store.ts';
import { readConfig, type Env } from './env.ts';
import { deleteUnusedInputs } from './input-retention.ts';
import { purgeDeletedJobs } from './job-deletion.ts';
import { sweepExpiredLeases } from './lease-expiry.ts';
import { sweepOrphanObjects } from './orphan-objects.ts';
import { sweepWebhooks } from './webhooks.ts';

/** One sweep: named for the log, bounded in what it touches per run. */
interface Sweep {
  name: string;
  run(env: Env, now: number): Promise<unknown>;
}

// D1 and R2 calls each costs per run at most (docs/operations.md counts them): 2 + 7 + 6 + 4 +
// DELETE_CALLS_PER_RUN (16) = 35, then the webhooks'. Workers Free allows 50 subrequests.
const SWEEPS: Sweep[] = [
  // Leases that ran out: fail what used its last attempt, wake nodes for what became claimable.
  { name: 'expired leases', run: (env, now) => sweepExpiredLeases(env, now) },
  { name: 'stale uploads', run: (env, now) => abortStaleUploads(env.DB, env.FILES, readConfig(env).staleUploadMs, now) },
  // Before the orphan sweep: the objects of a job being deleted are removed here, page by page.
  { name: 'deleted jobs', run: (env) => purgeDeletedJobs(env, readConfig(env)) },
  { name: 'orphaned objects', run: (env, now) => sweepOrphanObjects(env, readConfig(env), now) },
  { name: 'unused inputs', run: (env, now) => deleteUnusedInputs(env, readConfig(env), now) },
  // Last: it waits on receivers (up to ~50 s a round), and the sweeps before it must not.
  { name: 'webhooks', run: (env, now) => sweepWebhooks(env.DB, now, { secret: readConfig(env).webhookSecret }) },
];

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
