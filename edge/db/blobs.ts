/**
 * The rows of files stored by content (`blobs`) and of their chunked uploads in progress
 * (`blob_uploads`, `blob_upload_parts`); edge/blob-store.ts drives R2 around them.
 */
import { and, asc, eq, lt, or, sql } from 'drizzle-orm';
import { all, openDb, run, type Db } from './client.ts';
import { blobs, blobUploadParts, blobUploads } from './schema.ts';
import { LIVE } from './state-machine.ts';

export type UploadRow = typeof blobUploads.$inferSelect;
export type BlobRow = Pick<typeof blobs.$inferSelect, 'sha256' | 'size' | 'key'>;

export async function blobRow(d1: D1Database, sha256: string): Promise<BlobRow | undefined> {
  const db = openDb(d1);
  return db.select({ sha256: blobs.sha256, size: blobs.size, key: blobs.key }).from(blobs).where(eq(blobs.sha256, sha256)).get();
}

/** Records a blob whose bytes are verified; the first record of a hash wins. */
export function recordBlob(db: Db, blob: BlobRow, now: number) {
  return db.insert(blobs).values({ sha256: blob.sha256, size: blob.size, key: blob.key, createdAt: now }).onConflictDoNothing({ target: blobs.sha256 });
}

/** Records a blob at once (see recordBlob). */
export async function saveBlob(d1: D1Database, blob: BlobRow, now: number): Promise<void> {
  await recordBlob(openDb(d1), blob, now);
}

export async function uploadOf(d1: D1Database, sha256: string): Promise<UploadRow | undefined> {
  return openDb(d1).select().from(blobUploads).where(eq(blobUploads.sha256, sha256)).get();
}

export async function uploadById(d1: D1Database, sha256: string, uploadId: string): Promise<UploadRow | undefined> {
  return openDb(d1)
    .select()
    .from(blobUploads)
    .where(and(eq(blobUploads.id, uploadId), eq(blobUploads.sha256, sha256)))
    .get();
}

/** Whether an upload with this id is in progress. */
export async function uploadExists(d1: D1Database, uploadId: string): Promise<boolean> {
  const row = await openDb(d1).select({ id: blobUploads.id }).from(blobUploads).where(eq(blobUploads.id, uploadId)).get();
  return row !== undefined;
}

/** Records a new upload unless one of the blob is in progress already; whether it was recorded. */
export async function insertUpload(d1: D1Database, upload: UploadRow): Promise<boolean> {
  const [row] = await openDb(d1).insert(blobUploads).values(upload).onConflictDoNothing({ target: blobUploads.sha256 }).returning({ id: blobUploads.id });
  return row !== undefined;
}

/** The parts an upload has stored, in order. */
export async function uploadParts(d1: D1Database, uploadId: string): Promise<{ partNumber: number; etag: string; size: number }[]> {
  return openDb(d1)
    .select({ partNumber: blobUploadParts.partNumber, etag: blobUploadParts.etag, size: blobUploadParts.size })
    .from(blobUploadParts)
    .where(eq(blobUploadParts.uploadId, uploadId))
    .orderBy(asc(blobUploadParts.partNumber))
    .all();
}

/**
 * Records a stored part (a part sent again replaces the first copy) while its upload is still in
 * progress; whether it was.
 */
export async function recordPart(d1: D1Database, part: typeof blobUploadParts.$inferSelect): Promise<boolean> {
  const db = openDb(d1);
  const [recorded] = await db.batch([
    db
      .insert(blobUploadParts)
      .select(
        sql`SELECT ${part.uploadId}, ${part.partNumber}, ${part.size}, ${part.etag}, ${part.createdAt}
            WHERE EXISTS (SELECT 1 FROM blob_uploads WHERE id = ${part.uploadId})`,
      )
      .onConflictDoUpdate({
        target: [blobUploadParts.uploadId, blobUploadParts.partNumber],
        set: { etag: sql`excluded.etag`, size: sql`excluded.size`, createdAt: sql`excluded.created_at` },
      })
      .returning({ partNumber: blobUploadParts.partNumber }),
    db.update(blobUploads).set({ updatedAt: part.createdAt }).where(eq(blobUploads.id, part.uploadId)),
  ]);
  return recorded.length > 0;
}

function forgetUploadStatements(db: Db, uploadId: string) {
  return [db.delete(blobUploadParts).where(eq(blobUploadParts.uploadId, uploadId)), db.delete(blobUploads).where(eq(blobUploads.id, uploadId))] as const;
}

/** Forgets an upload and its parts. */
export async function forgetUpload(d1: D1Database, uploadId: string): Promise<void> {
  const db = openDb(d1);
  await db.batch(forgetUploadStatements(db, uploadId));
}

/** Records the blob an upload completed and forgets the upload, in one batch. */
export async function completeUploadRows(d1: D1Database, uploadId: string, blob: BlobRow, now: number): Promise<void> {
  const db = openDb(d1);
  await db.batch([recordBlob(db, blob, now), ...forgetUploadStatements(db, uploadId)]);
}

/** Uploads that received no part since `staleBefore` or started before `startedBefore`, oldest first. */
export async function staleUploads(d1: D1Database, staleBefore: number, startedBefore: number, limit: number): Promise<UploadRow[]> {
  return openDb(d1)
    .select()
    .from(blobUploads)
    .where(or(lt(blobUploads.updatedAt, staleBefore), lt(blobUploads.createdAt, startedBefore)))
    .orderBy(asc(blobUploads.updatedAt))
    .limit(limit)
    .all();
}

/**
 * Deletes up to `limit` inputs no live job uses (nor a manifest a live job renders) and unused
 * since `unusedBefore` (since stored, or since the last job using it was deleted), with the file
 * lists of the manifests among them; answers what it deleted. The delete checks again that no job
 * names the input, so a job created meanwhile keeps it. jobs_blend_sha256 and manifest_files_blob
 * find the users.
 */
export async function deleteUnusedBlobs(d1: D1Database, unusedBefore: number, limit: number): Promise<{ sha256: string; r2_key: string }[]> {
  const db = openDb(d1);
  const deleted = await all<{ sha256: string; r2_key: string }>(
    db,
    sql`DELETE FROM blobs WHERE sha256 IN (
          SELECT b.sha256 FROM blobs b WHERE COALESCE(b.last_used_at, b.created_at) < ${unusedBefore}
            AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.blend_sha256 = b.sha256 AND ${LIVE('j')})
            AND NOT EXISTS (SELECT 1 FROM manifest_files mf JOIN jobs j ON j.blend_sha256 = mf.manifest_sha256
              WHERE mf.blob_sha256 = b.sha256 AND ${LIVE('j')})
          LIMIT ${limit})
        RETURNING sha256, r2_key`,
  );
  if (deleted.length > 0) {
    // A manifest collected takes its file list along (its blobs follow once unused themselves).
    const shas = JSON.stringify(deleted.map((r) => r.sha256));
    await db.batch([
      run(db, sql`DELETE FROM manifest_files WHERE manifest_sha256 IN (SELECT value FROM json_each(${shas}))`),
      run(db, sql`DELETE FROM manifests WHERE sha256 IN (SELECT value FROM json_each(${shas}))`),
    ]);
  }
  return deleted;
}
