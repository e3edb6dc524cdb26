/**
 * Where a paged cron sweep stands between runs (the `sweep_cursors` table): a sweep that walks the
 * R2 bucket a page per run keeps the last key it handled, and one that runs a pass now and then
 * keeps when the next is due. A run that dies before saving just does its page again.
 */
import { eq } from 'drizzle-orm';
import { openDb } from './client.ts';
import { sweepCursors } from './schema.ts';

export interface SweepCursor {
  /** The last key handled in the current pass; null: between passes. */
  lastKey: string | null;
  /** Epoch ms: a sweep between passes starts no new one before this. */
  nextPassAt: number;
}

/** The sweep's cursor; a sweep that never ran is between passes, its first one due at once. */
export async function readCursor(d1: D1Database, name: string): Promise<SweepCursor> {
  const row = await openDb(d1)
    .select({ lastKey: sweepCursors.lastKey, nextPassAt: sweepCursors.nextPassAt })
    .from(sweepCursors)
    .where(eq(sweepCursors.name, name))
    .get();
  return { lastKey: row?.lastKey ?? null, nextPassAt: row?.nextPassAt ?? 0 };
}

/** Saves the sweep's cursor. */
export async function saveCursor(d1: D1Database, name: string, cursor: SweepCursor, now: number): Promise<void> {
  const row = { lastKey: cursor.lastKey, nextPassAt: cursor.nextPassAt, updatedAt: now };
  await openDb(d1)
    .insert(sweepCursors)
    .values({ name, ...row })
    .onConflictDoUpdate({ target: sweepCursors.name, set: row });
}
