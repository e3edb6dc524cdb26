/**
 * Warnings on a job: things a render node noticed that do not stop a render but make its frames
 * wrong, such as a missing texture (rendered magenta) or a missing linked library (its objects
 * left out). Kept in `jobs.warnings` (a JSON array of strings), deduplicated and capped, so a
 * thousand tasks reporting the same missing file leave one line.
 */

/** The most warnings a job keeps; later ones are dropped (the first ones say what to fix). */
export const MAX_JOB_WARNINGS = 200;

/**
 * Appends `warnings` to the job of a task, in one statement that also checks the lease, so a node
 * whose lease is gone adds nothing. Known warnings are not repeated; order is first seen.
 */
export async function recordJobWarnings(
  db: D1Database,
  lease: { task_id: string; lease_id: string; worker_id: string; warnings?: string[] },
  now: number,
): Promise<void> {
  if (!lease.warnings?.length) return;
  await db
    .prepare(
      `UPDATE jobs SET updated_at = ?3, warnings = (
         SELECT json_group_array(value) FROM (
           SELECT value, MIN(position) AS first FROM (
             SELECT value, key AS position FROM json_each(jobs.warnings)
             UNION ALL SELECT value, 1000000 + key FROM json_each(?1)
           ) GROUP BY value ORDER BY first LIMIT ?2))
       WHERE id = (SELECT job_id FROM tasks WHERE id = ?4 AND lease_id = ?5 AND worker_id = ?6 AND status = 'running')`,
    )
    .bind(JSON.stringify(lease.warnings), MAX_JOB_WARNINGS, now, lease.task_id, lease.lease_id, lease.worker_id)
    .run();
}
