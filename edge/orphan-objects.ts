/**
 * R2 objects that no D1 row names: what a master stopped between storing an object and recording
 * it leaves behind (a frame, a preview, a tile, a log, a completed blob upload), and what a late
 * upload to a deleted job may leave if the master stops before deleting it. The cron walks the
 * whole bucket one page per run, keeping the last key in `sweep_cursors`, and deletes such objects
 * once they are older than a grace period, so an upload in flight (object stored, row not yet
 * written) is never touched. A pass over the bucket starts at most every `orphanSweepIntervalMs`;
 * between passes a run costs one D1 row read.
 *
 * Which row names a key follows from the key itself (storage-keys.ts `parseObjectKey`), so each
 * check is a primary-key or indexed lookup; a key of a layout this master does not make is kept.
 */
import type { Env, FarmConfig } from './env.ts';
import { unrecordedFrameKeys } from './frame-audit.ts';
import { parseObjectKey } from './storage-keys.ts';
import { unnamedKeys } from './db/objects.ts';
import { readCursor, saveCursor } from './db/sweep-cursors.ts';

const CURSOR = 'orphan_objects';
/** Keys listed per run: R2's page limit, one list call. */
const LIST_LIMIT = 1000;

/** The keys among `keys` (none of them frame keys) that no row names (db/objects.ts). */
function unnamedOf(db: D1Database, keys: string[]): Promise<string[]> {
  const entries = keys.flatMap((key) => {
    const p = parseObjectKey(key);
    if (!p || p.kind === 'frame') return [];
    const job = 'jobId' in p ? p.jobId : null;
    const id = p.kind === 'log' || p.kind === 'tile' ? p.taskId : p.kind === 'legacy_blend' ? p.sha256 : null;
    const frame = p.kind === 'preview' ? p.frame : null;
    return [{ key, kind: p.kind, job, id, frame }];
  });
  return unnamedKeys(db, entries);
}

/**
 * One run of the sweep: the next page of the bucket, when a pass is under way or due.
 * At most 6 calls: the cursor read, one R2 list, two D1 checks (frames, then the other kinds), one
 * R2 delete and the cursor save; between passes only the cursor read.
 * @returns how many objects were looked at and deleted
 */
export async function sweepOrphanObjects(env: Env, config: FarmConfig, now: number): Promise<{ listed: number; deleted: number }> {
  const cursor = await readCursor(env.DB, CURSOR);
  if (cursor.lastKey === null && now < cursor.nextPassAt) return { listed: 0, deleted: 0 };
  const page = await env.FILES.list({ limit: LIST_LIMIT, ...(cursor.lastKey !== null ? { startAfter: cursor.lastKey } : {}) });
  // Only objects past the grace period: younger ones may be uploads whose row is being written.
  const old = page.objects.filter((o) => o.uploaded.getTime() < now - config.orphanGraceMs).map((o) => o.key);
  const frameKeys = old.filter((key) => parseObjectKey(key)?.kind === 'frame');
  const otherKeys = old.filter((key) => parseObjectKey(key)?.kind !== 'frame');
  const orphans = [...(await unrecordedFrameKeys(env.DB, frameKeys)), ...(await unnamedOf(env.DB, otherKeys))];
  if (orphans.length > 0) {
    await env.FILES.delete(orphans);
    console.warn(`deleted ${orphans.length} R2 object(s) that no D1 row named, e.g. ${orphans[0]}`);
  }
  const last = page.objects[page.objects.length - 1];
  await saveCursor(
    env.DB,
    CURSOR,
    page.truncated && last ? { lastKey: last.key, nextPassAt: cursor.nextPassAt } : { lastKey: null, nextPassAt: now + config.orphanSweepIntervalMs },
    now,
  );
  return { listed: page.objects.length, deleted: orphans.length };
}
