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
import { readCursor, saveCursor } from './sweep-cursors.ts';

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
  // A job being deleted (status 'deleted') no longer uses its input; jobs_blend_sha256 finds the
  // others, and manifest_files_blob the files of the manifests live jobs render.
  const { results } = await env.DB
    .prepare(
      `DELETE FROM blobs WHERE sha256 IN (
         SELECT b.sha256 FROM blobs b WHERE COALESCE(b.last_used_at, b.created_at) < ?1
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.blend_sha256 = b.sha256 AND j.status <> 'deleted')
           AND NOT EXISTS (SELECT 1 FROM manifest_files mf JOIN jobs j ON j.blend_sha256 = mf.manifest_sha256
             WHERE mf.blob_sha256 = b.sha256 AND j.status <> 'deleted')
         LIMIT ?2)
       RETURNING sha256, r2_key`,
    )
    .bind(now - config.inputRetentionMs, INPUTS_PER_RUN)
    .all<{ sha256: string; r2_key: string }>();
  if (results.length > 0) {
    // A manifest collected takes its file list along (its blobs follow once unused themselves).
    const shas = JSON.stringify(results.map((r) => r.sha256));
    await env.DB.batch([
      env.DB.prepare(`DELETE FROM manifest_files WHERE manifest_sha256 IN (SELECT value FROM json_each(?1))`).bind(shas),
      env.DB.prepare(`DELETE FROM manifests WHERE sha256 IN (SELECT value FROM json_each(?1))`).bind(shas),
    ]);
    await env.FILES.delete(results.map((r) => r.r2_key));
    console.log(`deleted ${results.length} input(s) no job used for ${config.inputRetentionMs / 86_400_000} days`);
  }
  // A full page may leave more: look again next run rather than in an hour.
  await saveCursor(env.DB, CURSOR, { lastKey: null, nextPassAt: results.length < INPUTS_PER_RUN ? now + PASS_INTERVAL_MS : now }, now);
  return results.length;
}
