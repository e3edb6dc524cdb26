/** Render node registration and the list of nodes. */
import { Hono } from 'hono';
import { registerWorkerSchema, type RegisterWorkerResponse } from '../../protocol/schemas.ts';
import type { AppEnv } from '../app-env.ts';
import { readJson } from '../validation.ts';

export const workerRoutes = new Hono<AppEnv>()
  .post('/register_worker', async (c) => {
    const config = c.get('config');
    const body = await readJson(c, registerWorkerSchema, config.maxJsonBytes);
    const now = Date.now();
    // A node that kept its id from an earlier run gets the same identity back.
    const workerId = body.worker_id ?? crypto.randomUUID();
    await c.env.DB.prepare(
      `INSERT INTO workers (id, name, hostname, blender_version, threads, enabled, created_at, last_seen_at)
       VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6)
       ON CONFLICT (id) DO UPDATE SET name = excluded.name, hostname = excluded.hostname,
         blender_version = excluded.blender_version, threads = excluded.threads, last_seen_at = excluded.last_seen_at`,
    )
      .bind(workerId, body.name, body.hostname ?? null, body.blender_version ?? null, body.threads ?? null, now)
      .run();
    const response: RegisterWorkerResponse = { worker_id: workerId, name: body.name, lease_ms: config.leaseMs };
    return c.json(response, 201);
  })
  .get('/workers', async (c) => {
    const config = c.get('config');
    const now = Date.now();
    const { results } = await c.env.DB.prepare(
      `SELECT w.*, (SELECT t.id FROM tasks t WHERE t.worker_id = w.id AND t.status = 'running' AND t.lease_expires_at >= ?1 LIMIT 1) AS task_id
       FROM workers w ORDER BY w.name LIMIT 1000`,
    )
      .bind(now)
      .all<{ id: string; name: string; hostname: string | null; blender_version: string | null; threads: number | null;
        enabled: number; frames_rendered: number; failures: number; created_at: number; last_seen_at: number; task_id: string | null }>();
    return c.json({
      workers: results.map((w) => ({
        worker_id: w.id,
        name: w.name,
        hostname: w.hostname,
        blender_version: w.blender_version,
        threads: w.threads,
        enabled: w.enabled === 1,
        online: now - w.last_seen_at <= config.leaseMs,
        current_task_id: w.task_id,
        frames_rendered: w.frames_rendered,
        failures: w.failures,
        last_seen_at: new Date(w.last_seen_at).toISOString(),
      })),
    });
  });
