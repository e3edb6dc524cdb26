/** Which rows name R2 objects, for the orphaned-object sweep (edge/orphan-objects.ts). */
import { sql } from 'drizzle-orm';
import { all, openDb } from './client.ts';

/** An object key as parsed from its layout, with what names it (storage-keys.ts parseObjectKey). */
export interface KeyEntry {
  key: string;
  kind: string;
  job: string | null;
  id: string | null;
  frame: number | null;
}

/**
 * The keys among `entries` (none of them frames) that no row names. A log belongs to its task
 * (every attempt's log is kept while the task is); a tile or video to the task whose output it is;
 * a blob to its blobs row or to the upload completing it; a blend stored by the seed's
 * `POST /submit_job` to its blobs row or to a job that renders it. A frame held while its form
 * is read (`uploads/`) is never named: the request that stored it copies and deletes it. Each
 * check is a primary-key or indexed lookup.
 */
export async function unnamedKeys(d1: D1Database, entries: KeyEntry[]): Promise<string[]> {
  if (entries.length === 0) return [];
  const field = (name: string) => sql.raw(`json_extract(value, '$.${name}')`);
  const rows = await all<{ key: string }>(
    openDb(d1),
    sql`SELECT ${field('key')} AS key FROM json_each(${JSON.stringify(entries)}) WHERE NOT CASE ${field('kind')}
          WHEN 'preview' THEN EXISTS (SELECT 1 FROM frames f WHERE f.job_id = ${field('job')} AND f.frame = ${field('frame')}
            AND f.preview_key = ${field('key')})
          WHEN 'log' THEN EXISTS (SELECT 1 FROM tasks t WHERE t.id = ${field('id')} AND t.job_id = ${field('job')})
          WHEN 'tile' THEN EXISTS (SELECT 1 FROM tasks t WHERE t.id = ${field('id')} AND t.output_key = ${field('key')})
          WHEN 'video' THEN EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = ${field('job')} AND t.kind = 'video'
            AND t.output_key = ${field('key')})
          WHEN 'blob' THEN EXISTS (SELECT 1 FROM blobs b WHERE b.r2_key = ${field('key')})
            OR EXISTS (SELECT 1 FROM blob_uploads u WHERE u.r2_key = ${field('key')})
          WHEN 'pending_frame' THEN 0
          WHEN 'legacy_blend' THEN EXISTS (SELECT 1 FROM blobs b WHERE b.sha256 = ${field('id')} AND b.r2_key = ${field('key')})
            OR EXISTS (SELECT 1 FROM jobs j WHERE j.blend_sha256 = ${field('id')})
          ELSE 1 END`,
  );
  return rows.map((r) => r.key);
}
