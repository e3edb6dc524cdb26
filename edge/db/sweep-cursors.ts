/**
 * Where a paged cron sweep stands between runs (the `sweep_cursors` table): a sweep that walks the
 * R2 bucket a page per run keeps the last key it handled, and one that runs a pass now and then
 * keeps when the next is due. A run that dies before saving just does its page again.
 */

export interface SweepCursor {
  /** The last key handled in the current pass; null: between passes. */
  lastKey: string | null;
  /** Epoch ms: a sweep between passes starts no new one before this. */
  nextPassAt: number;
}

/** The sweep's cursor; a sweep that never ran is between passes, its first one due at once. */
export async function readCursor(db: D1Database, name: string): Promise<SweepCursor> {
  const row = await db
    .prepare(`SELECT last_key, next_pass_at FROM sweep_cursors WHERE name = ?`)
    .bind(name)
    .first<{ last_key: string | null; next_pass_at: number }>();
  return { lastKey: row?.last_key ?? null, nextPassAt: row?.next_pass_at ?? 0 };
}

/** Saves the sweep's cursor. */
export async function saveCursor(db: D1Database, name: string, cursor: SweepCursor, now: number): Promise<void> {
  await db
    .prepare(
      `INSERT INTO sweep_cursors (name, last_key, next_pass_at, updated_at) VALUES (?1, ?2, ?3, ?4)
       ON CONFLICT (name) DO UPDATE SET last_key = excluded.last_key, next_pass_at = excluded.next_pass_at, updated_at = excluded.updated_at`,
    )
    .bind(name, cursor.lastKey, cursor.nextPassAt, now)
    .run();
}
