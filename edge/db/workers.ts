/**
 * Render node rows: registration, what a node can do, liveness, the node list and its controls
 * (disabling a node hands its tasks back: that is the state machine's, state-machine.ts), and the
 * per-credential request counters of the rate limit (edge/auth.ts).
 */
import { eq, sql } from 'drizzle-orm';
import type { TaskStatus } from '../../protocol/schemas.ts';
import { all, get, name, openDb, type Db } from './client.ts';
import { workers } from './schema.ts';

const running = name('running' satisfies TaskStatus);

export interface WorkerRow {
  id: string;
  name: string;
  enabled: number;
  last_seen_at: number;
}

/**
 * The statements that look a node up and mark it as seen now only when its `last_seen_at` is
 * older than a lease: liveness is recorded once per lease period, not per call, so an idle node
 * (a long poll every 20-30 s) writes its row less than once a minute with the default 60 s lease.
 * They run first in a batch with a request's own; the first answers the node (undefined: never
 * registered). A call that finds the row fresh writes nothing.
 */
export function touchStatements(db: Db, workerId: string, now: number, leaseMs: number) {
  return [
    get<WorkerRow>(db, sql`SELECT id, name, enabled, last_seen_at FROM workers WHERE id = ${workerId}`),
    db
      .update(workers)
      .set({ lastSeenAt: now })
      .where(sql`${seenIsStale(workerId, now, leaseMs)}`),
  ] as const;
}

/** The condition under which a request that heard from node `id` writes `last_seen_at` again (see touchStatements). */
const seenIsStale = (id: string, now: number, leaseMs: number) => sql`id = ${id} AND last_seen_at < ${now} - ${leaseMs}`;

/** Marks a node as seen now (when stale, see touchStatements); undefined when the id was never registered. */
export async function touchWorkerRow(d1: D1Database, workerId: string, now: number, leaseMs: number): Promise<WorkerRow | undefined> {
  const db = openDb(d1);
  const [found] = await db.batch(touchStatements(db, workerId, now, leaseMs));
  return found;
}

/** The node a credential (its SHA-256, hex) belongs to. */
export async function workerWithCredential(d1: D1Database, hash: string): Promise<string | null> {
  const row = await openDb(d1).select({ id: workers.id }).from(workers).where(eq(workers.credentialHash, hash)).get();
  return row?.id ?? null;
}

interface Registration {
  name: string;
  hostname: string | null;
  blenderVersion: string | null;
  threads: number | null;
}

/** An enrolled node registering again (a restart): same identity, same credential. */
export async function updateRegistration(d1: D1Database, workerId: string, info: Registration, now: number): Promise<void> {
  await openDb(d1)
    .update(workers)
    .set({ ...info, lastSeenAt: now })
    .where(eq(workers.id, workerId));
}

/**
 * Enrols a node with a new credential (its hash): a node that kept its id from an earlier run gets
 * the same identity back, unless another enrolled node holds it (`takeOver` aside: anonymous
 * mode). Whether it was enrolled.
 */
export async function enrolWorker(
  d1: D1Database,
  workerId: string,
  info: Registration,
  credentialHash: string,
  takeOver: boolean,
  now: number,
): Promise<boolean> {
  const row = await get(
    openDb(d1),
    sql`INSERT INTO workers (id, name, hostname, blender_version, threads, enabled, created_at, last_seen_at, credential_hash)
        VALUES (${workerId}, ${info.name}, ${info.hostname}, ${info.blenderVersion}, ${info.threads}, 1, ${now}, ${now}, ${credentialHash})
        ON CONFLICT (id) DO UPDATE SET name = excluded.name, hostname = excluded.hostname,
          blender_version = excluded.blender_version, threads = excluded.threads, last_seen_at = excluded.last_seen_at,
          credential_hash = excluded.credential_hash
        WHERE workers.credential_hash IS NULL OR ${takeOver ? 1 : 0} = 1
        RETURNING id`,
  );
  return row !== undefined;
}

/** What a node can do, as JSON arrays; a null leaves what the node had. */
export async function updateCapabilities(
  d1: D1Database,
  workerId: string,
  c: { devices: string | null; backends: string | null; tags: string | null; taskKinds: string | null },
): Promise<void> {
  await openDb(d1)
    .update(workers)
    .set({
      devices: sql`COALESCE(${c.devices}, devices)`,
      backends: sql`COALESCE(${c.backends}, backends)`,
      tags: sql`COALESCE(${c.tags}, tags)`,
      taskKinds: sql`COALESCE(${c.taskKinds}, task_kinds)`,
    })
    .where(eq(workers.id, workerId));
}

/** Enables or drains a node (a drained one finishes its task, then gets no new work); whether it exists. */
export async function setWorkerEnabled(d1: D1Database, workerId: string, enabled: boolean): Promise<boolean> {
  const [row] = await openDb(d1).update(workers).set({ enabled }).where(eq(workers.id, workerId)).returning({ id: workers.id });
  return row !== undefined;
}

export interface WorkerListRow {
  id: string;
  name: string;
  hostname: string | null;
  blender_version: string | null;
  threads: number | null;
  enabled: number;
  frames_rendered: number;
  failures: number;
  created_at: number;
  last_seen_at: number;
  devices: string | null;
  backends: string;
  tags: string;
  task_kinds: string;
  task_id: string | null;
  job_id: string | null;
  current_frame: number | null;
}

/** The nodes with their current task (a running task whose lease has not run out); `workerId` narrows it to one. */
export async function workerList(d1: D1Database, now: number, workerId?: string): Promise<WorkerListRow[]> {
  const only = workerId ?? null;
  return all(
    openDb(d1),
    sql`SELECT w.id, w.name, w.hostname, w.blender_version, w.threads, w.enabled, w.frames_rendered, w.failures,
          w.created_at, w.last_seen_at, w.devices, w.backends, w.tags, w.task_kinds, t.id AS task_id, t.job_id AS job_id, t.current_frame AS current_frame
        FROM workers w
        LEFT JOIN tasks t ON t.id = (SELECT t2.id FROM tasks t2 WHERE t2.worker_id = w.id AND t2.status = ${running}
          AND t2.lease_expires_at >= ${now} LIMIT 1)
        WHERE ${only} IS NULL OR w.id = ${only}
        ORDER BY w.name, w.id LIMIT 1000`,
  );
}

/**
 * Whether a node holds a lease on a task of a job that renders `blendFile`. Running tasks are
 * about as many as nodes, and the (status, ...) index finds them.
 */
export async function holdsTaskRendering(d1: D1Database, workerId: string, blendFile: string): Promise<boolean> {
  const row = await get(
    openDb(d1),
    sql`SELECT 1 AS held FROM tasks t JOIN jobs j ON j.id = t.job_id
        WHERE t.status = ${running} AND t.worker_id = ${workerId} AND j.blend_file = ${blendFile} LIMIT 1`,
  );
  return row !== undefined;
}

/**
 * Adds `count` requests to `key`'s rate-limit window, or opens a new window with them; answers the
 * window. SET expressions all read the row as it was, so both CASEs test the old window.
 */
export async function countRequests(
  d1: D1Database,
  key: string,
  count: number,
  now: number,
  windowMs: number,
): Promise<{ window_start: number; count: number } | undefined> {
  return get(
    openDb(d1),
    sql`INSERT INTO rate_limits (key, window_start, count) VALUES (${key}, ${now}, ${count})
        ON CONFLICT (key) DO UPDATE SET
          count = CASE WHEN rate_limits.window_start > ${now} - ${windowMs} THEN rate_limits.count + ${count} ELSE ${count} END,
          window_start = CASE WHEN rate_limits.window_start > ${now} - ${windowMs} THEN rate_limits.window_start ELSE ${now} END
        RETURNING window_start, count`,
  );
}
