/**
 * Inputs no job uses. A .blend, project .zip, project manifest or file a manifest names is stored
 * once by content (a blobs row and its R2 object) and shared by every job that renders it, so
 * deleting a job keeps it; once no job names
 * it for `inputRetentionMs` (counted from when it was stored, or from when the last job using it
 * was deleted), the cron deletes the row and the object. A later submission of the same file then
 * uploads it again.
 *
 * The row goes first, in one statement that checks again that no job names it, so a job created
 * meanwhile keeps its input; its object follows. Checked once an hour (a pass costs a scan of the
 * blobs table), a few inputs per run.
 */
import type { Env, FarmConfig } from './env.ts';
import { deleteUnusedBlobs } from './db/blobs.ts';
import { readCursor, saveCursor } from './db/sweep-cursors.ts';

const CURSOR = 'unused_inputs';
/** Inputs deleted per run: the keys go to one R2 delete call. */
const INPUTS_PER_RUN = 50;
const PASS_INTERVAL_MS = 3_600_000;

/**
 * One run: when a check is due, deletes up to INPUTS_PER_RUN unused inputs past their retention.
 * At most 5 calls: the cursor read, one D1 delete, one D1 batch for manifests' file lists, one R2
 * delete, the cursor save; between checks
 * only the cursor read.
 * @returns how many inputs were deleted
 */
export async function deleteUnusedInputs(env: Env, config: FarmConfig, now: number): Promise<number> {
  const cursor = await readCursor(env.DB, CURSOR);
  if (now < cursor.nextPassAt) return 0;
  // A job being deleted no longer uses its input.
  const results = await deleteUnusedBlobs(env.DB, now - config.inputRetentionMs, INPUTS_PER_RUN);
  if (results.length > 0) {
    await env.FILES.delete(results.map((r) => r.r2_key));
    console.log(`deleted ${results.length} input(s) no job used for ${config.inputRetentionMs / 86_400_000} days`);
  }
  // A full page may leave more: look again next run rather than in an hour.
  await saveCursor(env.DB, CURSOR, { lastKey: null, nextPassAt: results.length < INPUTS_PER_RUN ? now + PASS_INTERVAL_MS : now }, now);
  return results.length;
}
