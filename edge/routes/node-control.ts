/**
 * The node list and node control: drain (no new work, the current task finishes), disable (no
 * new work, the current task goes back to the queue at once) and enable.
 *
 * A node is online when it was heard from (a poll, a renewal, an upload) within one lease period:
 * a node that died shows as offline after at most LEASE_MS, the time its work takes to be
 * handed to another node.
 */
import { Hono } from 'hono';
import type { NodeState, WorkerControlResponse, WorkerInfo, WorkerListResponse } from '../../protocol/api.ts';
import type { Device, TaskKind } from '../../protocol/schemas.ts';
import type { AppEnv } from '../app-env.ts';
import { fail } from '../errors.ts';
import { requireId } from '../validation.ts';
import { setWorkerEnabled, workerList } from '../db/workers.ts';
import { disableWorker } from '../db/state-machine.ts';
import { onlineWindowMs } from '../workers-registry.ts';

/** A JSON array column; a damaged one reads as empty rather than failing the whole list. */
function parseList<T>(json: string | null): T[] {
  try {
    const value = JSON.parse(json ?? '[]') as unknown;
    return Array.isArray(value) ? (value as T[]) : [];
  } catch {
    return [];
  }
}

/**
 * The nodes as the API lists them, with their current task (a running task whose lease has not
 * run out). `workerId` narrows the list to one node.
 */
async function describeWorkers(db: D1Database, leaseMs: number, workerId?: string, now = Date.now()): Promise<WorkerInfo[]> {
  const results = await workerList(db, now, workerId);
  return results.map((w) => {
    const online = now - w.last_seen_at <= onlineWindowMs(leaseMs);
    const enabled = w.enabled === 1;
    let state: NodeState;
    if (!online) state = 'offline';
    else if (!enabled) state = w.task_id ? 'draining' : 'disabled';
    else state = w.task_id ? 'rendering' : 'idle';
    return {
      worker_id: w.id,
      name: w.name,
      hostname: w.hostname,
      blender_version: w.blender_version,
      threads: w.threads,
      enabled,
      online,
      state,
      current_task_id: w.task_id,
      current_job_id: w.job_id,
      current_frame: w.current_frame,
      devices: parseList<Device>(w.devices),
      backends: parseList<string>(w.backends),
      tags: parseList<string>(w.tags),
      task_kinds: parseList<TaskKind>(w.task_kinds),
      frames_rendered: w.frames_rendered,
      failures: w.failures,
      last_seen_at: new Date(w.last_seen_at).toISOString(),
    };
  });
}

async function describeWorker(db: D1Database, leaseMs: number, workerId: string): Promise<WorkerInfo> {
  const [worker] = await describeWorkers(db, leaseMs, workerId);
  if (!worker) fail(404, `no node with id ${workerId} (list them with GET /workers or farm nodes)`);
  return worker;
}

export const nodeControlRoutes = new Hono<AppEnv>()
  .get('/workers', async (c) => {
    const body: WorkerListResponse = { workers: await describeWorkers(c.env.DB, c.get('config').leaseMs) };
    return c.json(body);
  })
  .get('/workers/:worker_id', async (c) => {
    const workerId = requireId(c.req.param('worker_id'), 'worker_id');
    return c.json(await describeWorker(c.env.DB, c.get('config').leaseMs, workerId));
  })
  .post('/workers/:worker_id/drain', async (c) => {
    const workerId = requireId(c.req.param('worker_id'), 'worker_id');
    if (!(await setWorkerEnabled(c.env.DB, workerId, false))) fail(404, `no node with id ${workerId} (list them with GET /workers or farm nodes)`);
    const body: WorkerControlResponse = { ...(await describeWorker(c.env.DB, c.get('config').leaseMs, workerId)), released_tasks: 0 };
    return c.json(body);
  })
  .post('/workers/:worker_id/disable', async (c) => {
    const workerId = requireId(c.req.param('worker_id'), 'worker_id');
    const { found, released } = await disableWorker(c.env.DB, workerId, Date.now());
    if (!found) fail(404, `no node with id ${workerId} (list them with GET /workers or farm nodes)`);
    if (released > 0) c.get('wake')();
    const body: WorkerControlResponse = { ...(await describeWorker(c.env.DB, c.get('config').leaseMs, workerId)), released_tasks: released };
    return c.json(body);
  })
  .post('/workers/:worker_id/enable', async (c) => {
    const workerId = requireId(c.req.param('worker_id'), 'worker_id');
    if (!(await setWorkerEnabled(c.env.DB, workerId, true))) fail(404, `no node with id ${workerId} (list them with GET /workers or farm nodes)`);
    // A disabled node's long poll waits like one without work: this is what it waits for.
    c.get('wake')();
    const body: WorkerControlResponse = { ...(await describeWorker(c.env.DB, c.get('config').leaseMs, workerId)), released_tasks: 0 };
    return c.json(body);
  });
