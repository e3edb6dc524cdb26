/**
 * Projects stored file by file: the `manifests` rows and their file lists (`manifest_files`);
 * edge/manifest-store.ts checks and stores the manifests themselves.
 */
import { and, eq, sql } from 'drizzle-orm';
import { all, get, openDb, run } from './client.ts';
import { recordBlob, type BlobRow } from './blobs.ts';
import { manifestFiles, manifests } from './schema.ts';

export interface ManifestRow {
  sha256: string;
  main_blend: string;
  file_count: number;
  total_bytes: number;
  created_at: number;
  checked_at: number;
}

/** The blobs of manifest `sha256` that the master does not hold, each once. */
export async function missingBlobs(d1: D1Database, sha256: string): Promise<{ sha256: string; size: number }[]> {
  const rows = await all<{ sha256: string; size: number }>(
    openDb(d1),
    sql`SELECT mf.blob_sha256 AS sha256, MAX(mf.size) AS size FROM manifest_files mf
        WHERE mf.manifest_sha256 = ${sha256} AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.sha256 = mf.blob_sha256)
        GROUP BY mf.blob_sha256 ORDER BY mf.blob_sha256`,
  );
  return rows.map((r) => ({ sha256: r.sha256, size: Number(r.size) }));
}

/**
 * Records a manifest (idempotent: the same project gives the same hash and rows) with its file list
 * given as JSON pages `[[path, sha256, size], ...]`, and the blobs stored with it, in one batch.
 * Blobs the client is told it need not send start their retention again, so the cron cannot
 * collect one between this answer and the job that uses it.
 */
export async function recordManifest(
  d1: D1Database,
  manifest: { sha256: string; mainBlend: string; fileCount: number; totalBytes: number },
  filePages: string[],
  stored: BlobRow[],
  now: number,
): Promise<void> {
  const db = openDb(d1);
  const { sha256 } = manifest;
  await db.batch([
    db
      .insert(manifests)
      .values({ sha256, mainBlend: manifest.mainBlend, fileCount: manifest.fileCount, totalBytes: manifest.totalBytes, createdAt: now, checkedAt: now })
      .onConflictDoUpdate({ target: manifests.sha256, set: { checkedAt: sql`excluded.checked_at` } }),
    ...filePages.map((page) =>
      run(
        db,
        sql`INSERT INTO manifest_files (manifest_sha256, path, blob_sha256, size)
            SELECT ${sha256}, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(${page})
            WHERE true ON CONFLICT (manifest_sha256, path) DO NOTHING`,
      ),
    ),
    ...stored.map((blob) => recordBlob(db, blob, now)),
    run(db, sql`UPDATE blobs SET last_used_at = ${now} WHERE sha256 IN (SELECT blob_sha256 FROM manifest_files WHERE manifest_sha256 = ${sha256})`),
  ]);
}

export async function manifestRow(d1: D1Database, sha256: string): Promise<ManifestRow | undefined> {
  return get(openDb(d1), sql`SELECT * FROM manifests WHERE sha256 = ${sha256}`);
}

/**
 * For a manifest complete in blobs: how many files' sizes differ from their stored blob's, and the
 * bytes of its blobs stored since `since` (what the submission that posted it then sent).
 */
export async function manifestCheck(d1: D1Database, sha256: string, since: number): Promise<{ wrong_size: number; sent: number } | undefined> {
  return get(
    openDb(d1),
    sql`SELECT
          (SELECT COUNT(*) FROM manifest_files mf JOIN blobs b ON b.sha256 = mf.blob_sha256 WHERE mf.manifest_sha256 = ${sha256} AND b.size <> mf.size) AS wrong_size,
          (SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.created_at >= ${since}
             AND b.sha256 IN (SELECT blob_sha256 FROM manifest_files WHERE manifest_sha256 = ${sha256})) AS sent`,
  );
}

/** The stored blob of the file at `path` of a manifest. */
export async function manifestFileBlob(d1: D1Database, sha256: string, path: string): Promise<{ sha256: string; key: string } | undefined> {
  return get(
    openDb(d1),
    sql`SELECT b.sha256 AS sha256, b.r2_key AS key FROM manifest_files mf JOIN blobs b ON b.sha256 = mf.blob_sha256
        WHERE mf.manifest_sha256 = ${sha256} AND mf.path = ${path}`,
  );
}

/** A manifest's files, by path. */
export async function manifestFileList(d1: D1Database, sha256: string): Promise<{ path: string; sha256: string; size: number }[]> {
  return openDb(d1)
    .select({ path: manifestFiles.path, sha256: manifestFiles.blobSha256, size: manifestFiles.size })
    .from(manifestFiles)
    .where(eq(manifestFiles.manifestSha256, sha256))
    .orderBy(manifestFiles.path)
    .all();
}

/** Whether a manifest names a blob. */
export async function manifestNames(d1: D1Database, sha256: string, blobSha256: string): Promise<boolean> {
  const row = await openDb(d1)
    .select({ path: manifestFiles.path })
    .from(manifestFiles)
    .where(and(eq(manifestFiles.manifestSha256, sha256), eq(manifestFiles.blobSha256, blobSha256)))
    .limit(1)
    .get();
  return row !== undefined;
}
