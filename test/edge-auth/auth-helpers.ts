/**
 * Helpers for the master with authentication on (the `edge-auth` project in vitest.config.ts
 * sets FARM_ALLOW_ANONYMOUS=false and the tokens below). Requests go to the real Worker through
 * `exports.default.fetch`, or, where a test needs other settings, straight to the Hono app with
 * a changed copy of the bindings: the same code, configured differently.
 */
import { env, exports } from 'cloudflare:workers';
import type { RegisterWorkerResponse, SubmitJobResponse, TaskAssignment } from '../../protocol/schemas.ts';
import { app } from '../../edge/app.ts';
import { BASE, blendBytes, json, sha256, submitForm } from '../edge/helpers.ts';

/** The two submitter tokens configured (an old and a new one, as during a rotation). */
export const SUBMIT_TOKEN_OLD = 'test-submit-token-old';
export const SUBMIT_TOKEN = 'test-submit-token-new';
export const ENROL_TOKEN = 'test-node-enrolment-token';

/** Sends one request to the master Worker as configured for the project. */
export function send(path: string, init: RequestInit = {}, token?: string): Promise<Response> {
  const headers = new Headers(init.headers);
  if (token !== undefined) headers.set('authorization', `Bearer ${token}`);
  return exports.default.fetch(new Request(`${BASE}${path}`, { ...init, headers }));
}

/**
 * Sends one request to the app with some bindings changed (limits, tokens). Calling the app
 * directly skips the HTTP layer that adds Content-Length, so a form is serialized here first.
 */
export async function sendWith(vars: Record<string, string | undefined>, path: string, init: RequestInit = {}, token?: string): Promise<Response> {
  const headers = new Headers(init.headers);
  if (token !== undefined) headers.set('authorization', `Bearer ${token}`);
  let body = init.body;
  if (body instanceof FormData) {
    const encoded = new Request(BASE, { method: 'POST', body });
    headers.set('content-type', encoded.headers.get('content-type')!);
    body = new Uint8Array(await encoded.arrayBuffer());
    headers.set('content-length', String(body.byteLength));
  }
  return app.fetch(new Request(`${BASE}${path}`, { ...init, headers, body }), { ...env, ...vars });
}

export function jsonInit(body: unknown, method = 'POST'): RequestInit {
  return { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
}

/** Submits a job with a submitter token. */
export async function submitAs(token: string, fields: Record<string, string | number>, bytes = blendBytes()): Promise<SubmitJobResponse> {
  return json<SubmitJobResponse>(await send('/submit_job', { method: 'POST', body: submitForm(fields, bytes) }, token), 201);
}

export interface EnrolledNode {
  workerId: string;
  credential: string;
}

/** Enrols a render node with the enrolment token and returns its identity and credential. */
export async function enrol(name = 'node', extra: Record<string, unknown> = {}): Promise<EnrolledNode> {
  const body = await json<RegisterWorkerResponse>(await send('/register_worker', jsonInit({ name, ...extra }), ENROL_TOKEN), 201);
  if (!body.node_token) throw new Error('enrolment returned no node_token');
  return { workerId: body.worker_id, credential: body.node_token };
}

/** Claims work as `node`, which must get some. */
export async function claimAs(node: EnrolledNode): Promise<TaskAssignment> {
  return json<TaskAssignment>(await send('/get_job', jsonInit({ worker_id: node.workerId }), node.credential), 200);
}

/** `PUT /tasks/{id}/frames/{frame}` with the given identity headers and credential. */
export async function putFrameAs(
  credential: string,
  workerId: string,
  task: Pick<TaskAssignment, 'task_id' | 'lease_id'>,
  frame: number,
  bytes: Uint8Array,
): Promise<Response> {
  return send(
    `/tasks/${task.task_id}/frames/${frame}?ext=png`,
    {
      method: 'PUT',
      headers: {
        'content-type': 'image/png',
        'content-length': String(bytes.length),
        'x-farm-worker-id': workerId,
        'x-farm-lease-id': task.lease_id,
        'x-farm-sha256': await sha256(bytes),
      },
      body: bytes,
    },
    credential,
  );
}

/** The seed's multipart `POST /upload_result` with the given identity and credential. */
export function uploadResultAs(
  credential: string,
  workerId: string,
  task: Pick<TaskAssignment, 'task_id' | 'lease_id'>,
  frame: number,
  bytes: Uint8Array,
): Promise<Response> {
  const form = new FormData();
  form.set('worker_id', workerId);
  form.set('task_id', task.task_id);
  form.set('lease_id', task.lease_id);
  form.set('frame', String(frame));
  form.set('file', new File([bytes], `frame_${frame}.png`, { type: 'image/png' }));
  return send('/upload_result', { method: 'POST', body: form }, credential);
}

/** `PUT /tasks/{id}/log` with the given identity and credential. */
export function putLogAs(credential: string, workerId: string, task: Pick<TaskAssignment, 'task_id' | 'lease_id'>, text: string): Promise<Response> {
  const bytes = new TextEncoder().encode(text);
  return send(
    `/tasks/${task.task_id}/log`,
    {
      method: 'PUT',
      headers: { 'content-type': 'text/plain', 'content-length': String(bytes.length), 'x-farm-worker-id': workerId, 'x-farm-lease-id': task.lease_id },
      body: bytes,
    },
    credential,
  );
}
