/**
 * Deleting a job, in two steps, because a job can have a million frames: more R2 objects and D1
 * rows than one Worker invocation may delete (50 subrequests on Workers Free, 1000 keys per R2
 * delete, D1's per-query limits).
 *
 *  1. `DELETE /jobs/{id}` marks it (`status = 'deleted'`, one batch, db/state-machine.ts markJobDeleted): from then on it answers 404
 *     on every route and is gone from lists, no node is given its work (the claim serves only
 *     queued and running jobs), and its running tasks go back to the queue, so the nodes rendering
 *     it are refused at their next renewal or upload (409) and can never record a frame again.
 *  2. The cron removes its objects, then its rows, a page at a time within a per-run budget of
 *     calls, and the jobs row last. Each page is listed from the start of what is left, so a run
 *     that dies mid-way loses nothing: the job stays marked until nothing of it is left, and the
 *     next run carries on. An object a late upload stores after its prefix was emptied is named by
 *     no row, and the orphaned-object sweep deletes it (orphan-objects.ts).
 *
 * Inputs (.blend, .zip) are stored by content and shared: not deleted here, but their retention
 * clock starts when the last job using them is deleted (input-retention.ts).
 */
import type { Env, FarmConfig } from './env.ts';
import { jobObjectPrefixes } from './storage-keys.ts';
import { deleteJobRowsPage, nextDeletedJob } from './db/deleted-jobs.ts';
import { saveCursor } from './db/sweep-cursors.ts';

export interface PurgeProgress {
  /** Jobs whose last row was removed in this run. */
  jobsRemoved: number;
  objectsDeleted: number;
  rowsDeleted: number;
  /** D1 and R2 calls spent (at most `deleteCallsPerRun`). */
  calls: number;
}

/** The sweep_cursors row that says how far the job being removed has got (see purgeDeletedJobs). */
const STAGE = 'deleted_jobs';

/**
 * Step 2, one cron run's worth: removes deleted jobs' objects and rows, spending at most
 * `config.deleteCallsPerRun` calls (each R2 list, R2 delete and D1 query or batch counts one; at
 * least 4, so that a run always gets a page done) with pages of `config.deletePageSize` keys or
 * rows. The prefixes already emptied are remembered in `sweep_cursors` (`<job id>/<prefix
 * index>`), so that later runs do not list them again; a run that dies before saving just lists
 * them once more. On a farm with nothing to delete: one indexed query that reads no row.
 */
export async function purgeDeletedJobs(env: Env, config: Pick<FarmConfig, 'deletePageSize' | 'deleteCallsPerRun'>): Promise<PurgeProgress> {
  const budget = Math.max(4, config.deleteCallsPerRun);
  const size = config.deletePageSize;
  const progress: PurgeProgress = { jobsRemoved: 0, objectsDeleted: 0, rowsDeleted: 0, calls: 0 };
  // One call is kept back for saving the stage: a list and a delete need two more.
  const room = (calls: number) => progress.calls + calls + 1 <= budget;
  while (room(1)) {
    progress.calls++;
    const job = await nextDeletedJob(env.DB, STAGE);
    if (!job) break;
    const prefixes = jobObjectPrefixes(job.id);
    const saved = job.stage?.startsWith(`${job.id}/`) ? Number(job.stage.slice(job.id.length + 1)) : 0;
    // Objects first (a list and a delete per page), so that the row that finds the job stays
    // until its last object is gone; `stage` counts the prefixes found empty.
    let stage = saved;
    while (stage < prefixes.length && room(2)) {
      progress.calls++;
      const page = await env.FILES.list({ prefix: prefixes[stage], limit: size });
      if (page.objects.length > 0) {
        progress.calls++;
        await env.FILES.delete(page.objects.map((o) => o.key));
        progress.objectsDeleted += page.objects.length;
      }
      if (!page.truncated) stage++;
    }
    // Then its rows, a page of each table per batch; the jobs row goes with the batch that
    // leaves it no child.
    let removed = false;
    while (stage === prefixes.length && !removed && room(1)) {
      progress.calls++;
      const page = await deleteJobRowsPage(env.DB, job.id, size);
      progress.rowsDeleted += page.rows;
      removed = page.removed;
    }
    if (removed) {
      progress.jobsRemoved++;
      continue; // the next deleted job, if any; its stage starts at 0
    }
    if (stage > saved) {
      progress.calls++;
      await saveCursor(env.DB, STAGE, { lastKey: `${job.id}/${stage}`, nextPassAt: 0 }, Date.now());
    }
    break;
  }
  return progress;
}
