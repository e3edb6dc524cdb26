/** The master's record of render nodes: who they are and when they were last heard from. */
import { MAX_WAIT_MS } from '../protocol/schemas.ts';
import { touchWorkerRow, type WorkerRow } from './db/workers.ts';
import { fail } from './errors.ts';

/**
 * How long after its recorded `last_seen_at` a node still counts as online: a lease (the row is
 * rewritten only once it is that old) plus the longest long poll (the next call that rewrites it
 * may come that much later).
 */
export function onlineWindowMs(leaseMs: number): number {
  return leaseMs + MAX_WAIT_MS;
}

/** Answers 404 for a node the master does not know: the id was never registered (or the farm was reset). */
export function unknownWorker(workerId: string): never {
  fail(404, `no worker with id ${workerId}: register with POST /register_worker first`);
}

/** Marks a node as seen now (when stale, see db/workers.ts touchStatements); answers 404 when the id was never registered. */
export async function touchWorker(db: D1Database, workerId: string, now: number, leaseMs: number): Promise<WorkerRow> {
  return (await touchWorkerRow(db, workerId, now, leaseMs)) ?? unknownWorker(workerId);
}
