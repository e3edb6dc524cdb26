/** The master's record of render nodes: who they are and when they were last heard from. */
import { fail } from './errors.ts';

export interface WorkerRow {
  id: string;
  name: string;
  enabled: number;
  last_seen_at: number;
}

/** Marks a node as seen now; answers 404 when the id was never registered. */
export async function touchWorker(db: D1Database, workerId: string, now: number): Promise<WorkerRow> {
  const row = await db
    .prepare(`UPDATE workers SET last_seen_at = ? WHERE id = ? RETURNING id, name, enabled, last_seen_at`)
    .bind(now, workerId)
    .first<WorkerRow>();
  if (!row) fail(404, `no worker with id ${workerId}: register with POST /register_worker first`);
  return row;
}

/** Nodes heard from within `windowMs`: the parallelism a job can expect. */
export async function countActiveWorkers(db: D1Database, now: number, windowMs: number): Promise<number> {
  const row = await db
    .prepare(`SELECT COUNT(*) AS n FROM workers WHERE enabled = 1 AND last_seen_at >= ?`)
    .bind(now - windowMs)
    .first<{ n: number }>();
  return row?.n ?? 1;
}
