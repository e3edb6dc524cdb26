/** The master's record of render nodes: who they are and when they were last heard from. */
import { MAX_WAIT_MS } from '../protocol/schemas.ts';
import { fail } from './errors.ts';

export interface WorkerRow {
  id: string;
  name: string;
  enabled: number;
  last_seen_at: number;
}

/**
 * The condition under which a request that heard from a node writes `last_seen_at` again: the
 * stored value is older than a lease. Liveness is recorded once per lease period, not per call,
 * so an idle node (a long poll every 20-30 s) writes its row less than once a minute with the
 * default 60 s lease. `id`, `now` and `leaseMs` name the SQL parameters (`?1`...) holding those.
 */
export function seenIsStale(id: string, now: string, leaseMs: string): string {
  return `id = ${id} AND last_seen_at < ${now} - ${leaseMs}`;
}

/**
 * How long after its recorded `last_seen_at` a node still counts as online: a lease (the row is
 * rewritten only once it is that old) plus the longest long poll (the next call that rewrites it
 * may come that much later).
 */
export function onlineWindowMs(leaseMs: number): number {
  return leaseMs + MAX_WAIT_MS;
}

/**
 * The statements that look a node up and mark it as seen now only when its `last_seen_at` is
 * stale (`seenIsStale`), to run first in a batch with a request's own: the first one's result is
 * for `seenOr404`. A call that finds the row fresh writes nothing.
 */
export function touchStatements(db: D1Database, workerId: string, now: number, leaseMs: number): D1PreparedStatement[] {
  return [
    db.prepare(`SELECT id, name, enabled, last_seen_at FROM workers WHERE id = ?`).bind(workerId),
    db.prepare(`UPDATE workers SET last_seen_at = ?2 WHERE ${seenIsStale('?1', '?2', '?3')}`).bind(workerId, now, leaseMs),
  ];
}

/** Answers 404 when the touch found no node: the id was never registered (or the farm was reset). */
export function seenOr404(result: D1Result, workerId: string): WorkerRow {
  const row = result.results[0] as WorkerRow | undefined;
  if (!row) fail(404, `no worker with id ${workerId}: register with POST /register_worker first`);
  return row;
}

/** Marks a node as seen now (when stale, see `touchStatements`); answers 404 when the id was never registered. */
export async function touchWorker(db: D1Database, workerId: string, now: number, leaseMs: number): Promise<WorkerRow> {
  const [found] = await db.batch(touchStatements(db, workerId, now, leaseMs));
  return seenOr404(found!, workerId);
}
