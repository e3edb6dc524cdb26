/** The master's record of render nodes: who they are and when they were last heard from. */
import { fail } from './errors.ts';

export interface WorkerRow {
  id: string;
  name: string;
  enabled: number;
  last_seen_at: number;
}

/** The statement that marks a node as seen now, to run in a batch with a request's own (see `seenOr404`). */
export function touchStatement(db: D1Database, workerId: string, now: number): D1PreparedStatement {
  return db.prepare(`UPDATE workers SET last_seen_at = ? WHERE id = ? RETURNING id, name, enabled, last_seen_at`).bind(now, workerId);
}

/** Answers 404 when the touch found no node: the id was never registered (or the farm was reset). */
export function seenOr404(result: D1Result, workerId: string): WorkerRow {
  const row = result.results[0] as WorkerRow | undefined;
  if (!row) fail(404, `no worker with id ${workerId}: register with POST /register_worker first`);
  return row;
}

/** Marks a node as seen now; answers 404 when the id was never registered. */
export async function touchWorker(db: D1Database, workerId: string, now: number): Promise<WorkerRow> {
  const [touched] = await db.batch([touchStatement(db, workerId, now)]);
  return seenOr404(touched!, workerId);
}
