/**
 * Leases that ran out. The rule is written once, here, and run by two callers: every claim
 * (edge/scheduler.ts, in its own batch) and the cron (edge/cron.ts), so that a farm whose nodes all
 * died still fails the tasks and jobs whose last attempt ran out, without waiting for a node to ask
 * for work.
 *
 * A lease that ran out on a task's last attempt fails the task and its job, except a preview
 * video's task: every frame is stored by then, so its job completes with a warning instead. A task
 * whose lease ran out with attempts left needs no change: the claim re-leases `running` tasks whose
 * lease has run out just as it does `queued` ones, and counts the attempt when it does. Leaving it
 * `running` also keeps a late renewal from its node working until another node takes the task.
 */
import type { Env } from './env.ts';
import { wakeWaitingNodes } from './work-signal.ts';

const RUNNABLE = `('queued', 'running')`;

/**
 * The three statements that end the tasks (and jobs) whose lease ran out on their last attempt,
 * in the order they must run: the jobs first (they find the tasks by their state before it
 * changes), then the tasks. `now` names the parameter that holds the time (`?1`, `?2`, ...).
 */
export function expiredLeaseSql(now: string): string[] {
  return [
    `UPDATE jobs SET status = 'failed', finished_at = ${now}, updated_at = ${now},
       error = COALESCE(error, 'frames ' || (SELECT t.start_frame || '-' || t.end_frame FROM tasks t
         WHERE t.job_id = jobs.id AND t.status = 'running' AND t.lease_expires_at < ${now}
         AND t.attempts >= jobs.max_attempts LIMIT 1) || ' failed: the node rendering them stopped answering on every attempt')
     WHERE status IN ${RUNNABLE} AND EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = jobs.id AND t.status = 'running'
       AND t.lease_expires_at < ${now} AND t.attempts >= jobs.max_attempts AND t.kind <> 'video')`,
    // ... except a preview video's: the job completes without it (every frame is stored by then).
    `UPDATE jobs SET status = 'completed', finished_at = ${now}, updated_at = ${now},
       warnings = json_insert(warnings, '$[#]', 'the preview video could not be made: the node making it stopped answering on every attempt')
     WHERE status IN ${RUNNABLE} AND EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = jobs.id AND t.status = 'running'
       AND t.lease_expires_at < ${now} AND t.attempts >= jobs.max_attempts AND t.kind = 'video')`,
    `UPDATE tasks SET status = 'failed', failure_reason = 'lease_expired', updated_at = ${now},
       message = 'the node stopped renewing its lease (' || attempts || ' attempts)'
     WHERE status = 'running' AND lease_expires_at < ${now}
       AND attempts >= (SELECT max_attempts FROM jobs WHERE jobs.id = tasks.job_id)`,
  ];
}

/**
 * How far back the cron looks for leases that ran out since its previous run: two runs, so that
 * a run that starts late or is skipped still wakes the nodes (at worst twice for one lease).
 */
export const EXPIRY_LOOKBACK_MS = 2 * 60_000;

/**
 * The cron's sweep: applies the rule above, and wakes the nodes waiting for work when a lease
 * ran out (within EXPIRY_LOOKBACK_MS) on a task that has attempts left in a job still served:
 * that task is claimable now, and no request said so.
 * @returns how many jobs and tasks the rule ended, and whether nodes were woken
 */
export async function sweepExpiredLeases(env: Env, now: number): Promise<{ jobsEnded: number; tasksFailed: number; woke: boolean }> {
  const db = env.DB;
  const results = await db.batch([
    ...expiredLeaseSql('?1').map((sql) => db.prepare(sql).bind(now)),
    // The tasks_expiry index (status, lease_expires_at) finds these among the running tasks.
    db
      .prepare(
        `SELECT 1 AS claimable FROM tasks t JOIN jobs j ON j.id = t.job_id
         WHERE t.status = 'running' AND t.lease_expires_at < ?1 AND t.lease_expires_at >= ?2 AND j.status IN ${RUNNABLE} LIMIT 1`,
      )
      .bind(now, now - EXPIRY_LOOKBACK_MS),
  ]);
  const jobsEnded = (results[0]!.meta.changes ?? 0) + (results[1]!.meta.changes ?? 0);
  const tasksFailed = results[2]!.meta.changes ?? 0;
  const woke = results[3]!.results.length > 0;
  if (woke) await wakeWaitingNodes(env);
  return { jobsEnded, tasksFailed, woke };
}
