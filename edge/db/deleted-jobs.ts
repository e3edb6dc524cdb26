/**
 * The rows of deleted jobs, removed by the cron a page at a time (edge/job-deletion.ts); marking a
 * job deleted is the state machine's (state-machine.ts markJobDeleted).
 */
import { sql } from 'drizzle-orm';
import { all, changes, get, name, openDb, run } from './client.ts';
import { DELETED } from './state-machine.ts';

/**
 * A job being deleted and the stage its removal reached (the `last_key` of sweep cursor `stage`).
 * The jobs_runnable index starts with status: deleted jobs are found without a scan.
 */
export async function nextDeletedJob(d1: D1Database, stage: string): Promise<{ id: string; stage: string | null } | undefined> {
  return get(openDb(d1), sql`SELECT id, (SELECT last_key FROM sweep_cursors WHERE name = ${stage}) AS stage FROM jobs WHERE status = ${name(DELETED)} LIMIT 1`);
}

/**
 * Deletes a page (`size` rows) of each table holding a deleted job's rows, in one batch, and the
 * jobs row with the batch that leaves it no child.
 * @returns the child rows deleted, and whether the job row went
 */
export async function deleteJobRowsPage(d1: D1Database, jobId: string, size: number): Promise<{ rows: number; removed: boolean }> {
  const db = openDb(d1);
  const [frames, tasks, blocklist, job] = await db.batch([
    run(db, sql`DELETE FROM frames WHERE job_id = ${jobId} AND frame IN (SELECT frame FROM frames WHERE job_id = ${jobId} LIMIT ${size})`),
    run(db, sql`DELETE FROM tasks WHERE id IN (SELECT id FROM tasks WHERE job_id = ${jobId} LIMIT ${size})`),
    run(
      db,
      sql`DELETE FROM job_blocklist WHERE job_id = ${jobId}
                  AND worker_id IN (SELECT worker_id FROM job_blocklist WHERE job_id = ${jobId} LIMIT ${size})`,
    ),
    all(
      db,
      sql`DELETE FROM jobs WHERE id = ${jobId} AND status = ${name(DELETED)} AND NOT EXISTS (SELECT 1 FROM frames WHERE job_id = ${jobId})
                  AND NOT EXISTS (SELECT 1 FROM tasks WHERE job_id = ${jobId}) AND NOT EXISTS (SELECT 1 FROM job_blocklist WHERE job_id = ${jobId})
                RETURNING id`,
    ),
  ]);
  return { rows: changes(frames) + changes(tasks) + changes(blocklist), removed: job.length > 0 };
}
