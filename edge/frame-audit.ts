/**
 * Keeping a job's frames in R2 and its frames rows in D1 in step. Storing a frame is two steps
 * (the object, then the row), so a master stopped between them leaves an object no row names.
 * Retries on the same lease overwrite their own object (see frame-store.ts), which covers the usual
 * case; what is left is swept once the job is complete (and, for every job, by the cron's pass over
 * the bucket, orphan-objects.ts), and `auditJobStorage` reports both sides.
 */
import { framePage, unrecordedFrames } from './db/frames.ts';
import { parseObjectKey } from './storage-keys.ts';

/** Objects listed (and checked against D1) per step; one bound JSON array per D1 query. */
const PAGE = 500;
/** The audit answers for up to this many objects in one request, and says when it stopped. */
const MAX_AUDITED_OBJECTS = 100_000;

/** Where `frameKey` puts every frame object of a job. */
const framePrefix = (jobId: string) => `renders/${jobId}/`;

/**
 * The keys among `keys` (frame objects, of any jobs) that no frames row names. Each is looked up
 * by the job and frame its key names (db/frames.ts); a key that is not a frame key is never named. Shared with the cron's
 * orphaned-object sweep (orphan-objects.ts).
 */
export async function unrecordedFrameKeys(db: D1Database, keys: string[]): Promise<string[]> {
  if (keys.length === 0) return [];
  return unrecordedFrames(
    db,
    keys.map((key) => {
      const parsed = parseObjectKey(key);
      return parsed?.kind === 'frame' ? [key, parsed.jobId, parsed.frame] : [key, '', 0];
    }),
  );
}

async function* listFrameObjects(bucket: R2Bucket, jobId: string): AsyncGenerator<R2Object[]> {
  let cursor: string | undefined;
  for (;;) {
    const page = await bucket.list({ prefix: framePrefix(jobId), limit: PAGE, ...(cursor ? { cursor } : {}) });
    yield page.objects;
    if (!page.truncated) return;
    cursor = page.cursor;
  }
}

/**
 * Deletes the job's frame objects that no frames row names. Safe while uploads run: an upload's
 * key is its lease's, so a retry that is still in flight writes the key its row already names.
 * @returns how many objects were deleted
 */
export async function sweepUnrecordedFrames(db: D1Database, bucket: R2Bucket, jobId: string): Promise<number> {
  let deleted = 0;
  for await (const objects of listFrameObjects(bucket, jobId)) {
    const orphans = await unrecordedFrameKeys(
      db,
      objects.map((o) => o.key),
    );
    if (orphans.length > 0) {
      await bucket.delete(orphans);
      deleted += orphans.length;
    }
  }
  if (deleted > 0) console.warn(`job ${jobId}: deleted ${deleted} frame object(s) that no frame row named`);
  return deleted;
}

export interface StorageAudit {
  job_id: string;
  /** Frames rows: what job_status counts. */
  recorded_frames: number;
  /** Frame objects in R2 under the job's prefix. */
  stored_objects: number;
  stored_bytes: number;
  /** Frames whose row names an object that is not in R2 (at most 100 listed). */
  missing_frames: number[];
  /** Objects that no frames row names (swept once the job is complete). */
  unrecorded_objects: number;
  /** False when the job has more than MAX_AUDITED_OBJECTS objects and only those were checked. */
  complete: boolean;
}

/** Compares a job's frames rows with its objects in R2. */
export async function auditJobStorage(db: D1Database, bucket: R2Bucket, jobId: string): Promise<StorageAudit> {
  const stored = new Set<string>();
  let bytes = 0;
  let unrecordedCount = 0;
  let complete = true;
  for await (const objects of listFrameObjects(bucket, jobId)) {
    for (const object of objects) {
      stored.add(object.key);
      bytes += object.size;
    }
    unrecordedCount += (
      await unrecordedFrameKeys(
        db,
        objects.map((o) => o.key),
      )
    ).length;
    if (stored.size >= MAX_AUDITED_OBJECTS) {
      complete = false;
      break;
    }
  }
  const missing: number[] = [];
  let recorded = 0;
  let after = -1;
  for (;;) {
    const results = await framePage(db, jobId, after, PAGE);
    for (const row of results) {
      recorded++;
      if (complete && !stored.has(row.r2_key) && missing.length < 100) missing.push(row.frame);
    }
    if (results.length < PAGE) break;
    after = results[results.length - 1]!.frame;
  }
  return {
    job_id: jobId,
    recorded_frames: recorded,
    stored_objects: stored.size,
    stored_bytes: bytes,
    missing_frames: missing,
    unrecorded_objects: unrecordedCount,
    complete,
  };
}
