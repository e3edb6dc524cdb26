/**
 * What a node can do, as it said when it registered: its devices (shown in the node list), the
 * render backends they give (what the scheduler matches a job's `device` against), its tags, and
 * the task kinds beside `render` it runs. A node that leaves a field out keeps what it had.
 */
import { DEVICE_REQUIREMENTS, type RegisterWorkerRequest } from '../protocol/schemas.ts';
import { updateCapabilities } from './db/workers.ts';

/** Backends a device type gives: `CUDA` → `cuda`; CPU always. Unknown types are shown but not matched. */
function backendsOf(devices: NonNullable<RegisterWorkerRequest['devices']>): string[] {
  const known = new Set<string>(DEVICE_REQUIREMENTS);
  const backends = new Set(['cpu']);
  for (const device of devices) {
    const backend = device.type.toLowerCase();
    if (known.has(backend) && backend !== 'any' && backend !== 'gpu') backends.add(backend);
  }
  return [...backends];
}

export async function recordCapabilities(db: D1Database, workerId: string, body: RegisterWorkerRequest): Promise<void> {
  const devices = body.devices ? JSON.stringify(body.devices) : null;
  const backends = body.devices ? JSON.stringify(backendsOf(body.devices)) : null;
  const tags = body.tags ? JSON.stringify([...new Set(body.tags)]) : null;
  const kinds = body.task_kinds ? JSON.stringify([...new Set(['render', ...body.task_kinds])]) : null;
  if (!devices && !tags && !kinds) return;
  await updateCapabilities(db, workerId, { devices, backends, tags, taskKinds: kinds });
}
