/**
 * The cron's sweep of leases that ran out. The rule (a lease that runs out is a node lost, and a
 * task lost `max_node_losses` times in a row fails) is the state machine's (db/state-machine.ts,
 * "Leases that ran out"), run by every claim and by this sweep, so that a farm whose nodes all
 * died still fails the jobs whose frames keep losing their nodes, without waiting for a node to
 * ask for work.
 */
import { sweepLostNodes } from './db/state-machine.ts';
import type { Env } from './env.ts';
import { wakeWaitingNodes } from './work-signal.ts';

/**
 * How far back the cron looks for leases that ran out since its previous run: two runs, so that
 * a run that starts late or is skipped still wakes the nodes (at worst twice for one lease).
 */
const EXPIRY_LOOKBACK_MS = 2 * 60_000;

/**
 * The cron's sweep: applies the rule, and wakes the nodes waiting for work when a lease ran out
 * (within EXPIRY_LOOKBACK_MS) on a task of a job still served: that task is claimable now, and
 * no request said so.
 * @returns how many jobs and tasks the rule ended, and whether nodes were woken
 */
export async function sweepExpiredLeases(env: Env, now: number): Promise<{ jobsEnded: number; tasksFailed: number; woke: boolean }> {
  const { jobsEnded, tasksFailed, claimable } = await sweepLostNodes(env.DB, now, now - EXPIRY_LOOKBACK_MS);
  if (claimable) await wakeWaitingNodes(env);
  return { jobsEnded, tasksFailed, woke: claimable };
}
