/**
 * Leases that ran out. The rule is written once, here, and run by two callers: every claim
 * (edge/scheduler.ts, in its own batch) and the cron (edge/cron.ts), so that a farm whose nodes all
 * died still fails the jobs whose frames keep losing their nodes, without waiting for a node to
 * ask for work.
 *
 * A lease that runs out is a node lost (it died, restarted, or its link dropped), not a render
 * that failed: the task goes back to the farm without using one of the job's attempts. Nothing
 * changes when the lease runs out: the task stays `running`, so its holder, should it come back
 * before anyone else took the task, renews the lease and keeps its work (routes/tasks.ts). The
 * claim re-leases a `running` task whose lease has run out just as it does a `queued` one, and
 * counts the loss (`RELEASE_COUNTS`) instead of an attempt. A restarted node's tasks are handed
 * back by making their leases run out now (`bootRestartStatements`), so they follow this rule too.
 *
 * Only a task lost `max_node_losses` times in a row fails, and its job with it: nodes that keep
 * disappearing while rendering the same frames point at a .blend that kills machines (out of
 * memory, a driver crash). A preview video's task is the exception: every frame is stored by
 * then, so its job completes with a warning instead. A job that is paused keeps its tasks as they
 * are until it is resumed, when the next claim applies the rule: a paused job never strands a
 * task that nobody may take.
 */
import type { Env } from './env.ts';
import { taskFramesLabelSql } from './frame-ranges.ts';
import { wakeWaitingNodes } from './work-signal.ts';

const RUNNABLE = `('queued', 'running')`;

/**
 * The task `t` (of job `j`, or of the job the statement updates) lost its node once more than its
 * job allows: its lease ran out, and it was lost `max_node_losses - 1` times in a row before.
 */
const lostTooOften = (now: string, job: string) =>
  `t.status = 'running' AND t.lease_expires_at < ${now} AND t.node_losses + 1 >= ${job}.max_node_losses`;

/**
 * How a claim counts what ended the task's previous lease, as the SET of its re-lease (the task's
 * old values): after a lease that ran out (the task is still `running`) a node loss in a row, and
 * no attempt; after a queued task's (released, failed, new) an attempt, and the losses are as the
 * lease's end left them (failTask and a release reset them).
 */
export const RELEASE_COUNTS = `attempts = attempts + CASE WHEN status = 'running' THEN 0 ELSE 1 END,
  node_losses = node_losses + CASE WHEN status = 'running' THEN 1 ELSE 0 END`;

/**
 * The statements that end the tasks (and jobs) that lost their node too often, in the order they
 * must run: the jobs first (they find the tasks by their state before it changes), then the
 * tasks, once their job has ended. `now` names the parameter that holds the time (`?1`, `?2`, ...).
 */
export function expiredLeaseSql(now: string): string[] {
  return [
    `UPDATE jobs SET status = 'failed', finished_at = ${now}, updated_at = ${now},
       error = COALESCE(error, 'nodes kept disappearing while rendering ' || (SELECT ${taskFramesLabelSql('t')}
         || ': their node was lost ' || (t.node_losses + 1) || ' times in a row (max_node_losses ' || jobs.max_node_losses
         || '); the .blend may exhaust the memory of, or crash, the machines that render it' FROM tasks t
         WHERE t.job_id = jobs.id AND ${lostTooOften(now, 'jobs')} LIMIT 1))
     WHERE status IN ${RUNNABLE} AND EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = jobs.id AND ${lostTooOften(now, 'jobs')} AND t.kind <> 'video')`,
    // ... except a preview video's: the job completes without it (every frame is stored by then).
    `UPDATE jobs SET status = 'completed', finished_at = ${now}, updated_at = ${now},
       warnings = json_insert(warnings, '$[#]', 'the preview video could not be made: the nodes making it kept disappearing')
     WHERE status IN ${RUNNABLE} AND EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = jobs.id AND ${lostTooOften(now, 'jobs')} AND t.kind = 'video')`,
    // The tasks, once their job is no longer served (ended above or before); a paused job's wait.
    `UPDATE tasks SET status = 'failed', failure_reason = 'lease_expired', updated_at = ${now},
       message = 'its node was lost ' || (node_losses + 1) || ' times in a row (the lease ran out or the node restarted)'
     WHERE id IN (SELECT t.id FROM tasks t JOIN jobs j ON j.id = t.job_id
       WHERE ${lostTooOften(now, 'j')} AND j.status NOT IN ${RUNNABLE} AND j.status <> 'paused')`,
  ];
}

/**
 * The statements a registration runs when a known node comes back with a new boot id (its
 * process restarted, see protocol registerWorkerSchema): the leases its earlier life held run out
 * now, so the claims hand their tasks out at once under the rule above (a node loss, no attempt;
 * frames already uploaded stay), and the new boot id is kept. The first returns the tasks handed
 * back. A registration without a boot id (the seed's curl) hands nothing back.
 */
export function bootRestartStatements(db: D1Database, workerId: string, bootId: string, now: number): D1PreparedStatement[] {
  return [
    db
      .prepare(
        `UPDATE tasks SET lease_expires_at = ?3 - 1, updated_at = ?3, message = 'handed back: its node restarted'
         WHERE worker_id = ?1 AND status = 'running' AND lease_expires_at >= ?3
           AND EXISTS (SELECT 1 FROM workers WHERE id = ?1 AND boot_id IS NOT ?2)
         RETURNING id`,
      )
      .bind(workerId, bootId, now),
    db.prepare(`UPDATE workers SET boot_id = ?2 WHERE id = ?1`).bind(workerId, bootId),
  ];
}

/**
 * How far back the cron looks for leases that ran out since its previous run: two runs, so that
 * a run that starts late or is skipped still wakes the nodes (at worst twice for one lease).
 */
export const EXPIRY_LOOKBACK_MS = 2 * 60_000;

/**
 * The cron's sweep: applies the rule above, and wakes the nodes waiting for work when a lease
 * ran out (within EXPIRY_LOOKBACK_MS) on a task of a job still served: that task is claimable
 * now, and no request said so.
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
