/** Render node registration (the node list and node control are in node-control.ts). */
import { Hono, type Context } from 'hono';
import { registerWorkerSchema, type RegisterWorkerResponse } from '../../protocol/schemas.ts';
import type { AppEnv } from '../app-env.ts';
import { credentialHash, newNodeCredential } from '../auth.ts';
import { fail } from '../errors.ts';
import { enrolWorker, updateRegistration } from '../db/workers.ts';
import { readJson } from '../validation.ts';
import { recordCapabilities } from '../node-capabilities.ts';
import { handBackRestartedNode } from '../db/state-machine.ts';

/**
 * After a registration: a node whose boot id changed restarted, so the tasks its earlier life
 * held are handed back now (db/state-machine.ts) and the nodes waiting for work are woken.
 */
async function handBackEarlierLife(c: Context<AppEnv>, workerId: string, bootId: string | undefined, now: number): Promise<void> {
  if (bootId === undefined) return;
  if ((await handBackRestartedNode(c.env.DB, workerId, bootId, now)) > 0) c.get('wake')();
}

export const workerRoutes = new Hono<AppEnv>().post('/register_worker', async (c) => {
  const config = c.get('config');
  const body = await readJson(c, registerWorkerSchema, config.maxJsonBytes);
  const principal = c.get('principal');
  const now = Date.now();
  const info = { name: body.name, hostname: body.hostname ?? null, blenderVersion: body.blender_version ?? null, threads: body.threads ?? null };

  if (principal.kind === 'node') {
    // An enrolled node registering again (a restart): same identity, same credential.
    if (body.worker_id !== undefined && body.worker_id !== principal.workerId) {
      fail(403, `this node credential belongs to worker ${principal.workerId}; it cannot register as worker ${body.worker_id}`);
    }
    await updateRegistration(c.env.DB, principal.workerId, info, now);
    await recordCapabilities(c.env.DB, principal.workerId, body);
    await handBackEarlierLife(c, principal.workerId, body.boot_id, now);
    const response: RegisterWorkerResponse = { worker_id: principal.workerId, name: body.name, lease_ms: config.leaseMs };
    return c.json(response, 201);
  }

  // Enrolment: a new credential, of which the master keeps only the hash. A node that kept its
  // id from an earlier run gets the same identity back, unless another enrolled node holds it:
  // the enrolment token does not let one node take over another's identity.
  const workerId = body.worker_id ?? crypto.randomUUID();
  const nodeToken = newNodeCredential();
  const enrolled = await enrolWorker(c.env.DB, workerId, info, await credentialHash(nodeToken), principal.kind === 'anonymous', now);
  if (!enrolled) {
    fail(409, `worker ${workerId} is enrolled already and has its own credential: register with that credential, or without worker_id to enrol as a new node`);
  }
  await recordCapabilities(c.env.DB, workerId, body);
  await handBackEarlierLife(c, workerId, body.boot_id, now);
  const response: RegisterWorkerResponse = { worker_id: workerId, name: body.name, lease_ms: config.leaseMs, node_token: nodeToken };
  return c.json(response, 201);
});
