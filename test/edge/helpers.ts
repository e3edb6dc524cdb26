/**
 * Helpers for the master's tests: they talk to the real Worker through `exports.default.fetch`
 * (inside workerd, with the real D1 and R2 bindings) and read D1 and R2 directly to check what a
 * request did or did not change.
 */
import { applyD1Migrations, reset } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { zstdCompressSync } from 'node:zlib';
import { afterEach, beforeAll, beforeEach, expect, vi } from 'vitest';
import { webhookTiming } from '../../edge/webhooks.ts';
import type { WebhookPayload } from '../../protocol/api.ts';
import type {
  JobStatusResponse,
  RegisterWorkerResponse,
  SubmitJobResponse,
  TaskAssignment,
  UpdateTaskStatusRequest,
  UploadResultResponse,
} from '../../protocol/schemas.ts';

// A loopback name (RFC 6761): the edge project runs in anonymous mode, which serves only this machine.
export const BASE = 'http://farm.localhost';

/** Sends one request to the master Worker. `path` starts with `/`. */
export function call(path: string, init?: RequestInit): Promise<Response> {
  return exports.default.fetch(new Request(`${BASE}${path}`, init));
}

/** POSTs `body` as JSON. */
export function postJson(path: string, body: unknown): Promise<Response> {
  return call(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

/** Reads a JSON body after checking the status, with the body in the failure message. */
export async function json<T>(res: Response, status: number): Promise<T> {
  const text = await res.text();
  expect(res.status, `${res.url || 'response'}: ${text}`).toBe(status);
  return JSON.parse(text) as T;
}

/** Asserts an error answer: the status, the `{ error }` shape, and a helpful phrase in it. */
export async function expectError(res: Response, status: number, phrase: string | RegExp): Promise<string> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect(res.headers.get('content-type') ?? '').toContain('application/json');
  const body = JSON.parse(text) as { error?: unknown };
  expect(Object.keys(body)).toEqual(['error']);
  expect(typeof body.error).toBe('string');
  if (typeof phrase === 'string') expect(body.error).toContain(phrase);
  else expect(body.error).toMatch(phrase);
  return body.error as string;
}

const encoder = new TextEncoder();

/** A minimal .blend for the master, which reads only its header (`BLENDER-v304`, Blender 3.4). */
export function blendBytes(size = 4096, tag = 'scene'): Uint8Array {
  const bytes = new Uint8Array(size);
  bytes.set(encoder.encode(`BLENDER-v304${tag}`));
  for (let i = 32; i < size; i++) bytes[i] = (i * 31 + tag.length) & 0xff;
  return bytes;
}

/** A .blend.gz as Blender before 3.0 wrote it: gzip of a plain .blend. */
export async function gzipBlendBytes(): Promise<Uint8Array> {
  const stream = new Blob([blendBytes(2048, 'gzip')]).stream().pipeThrough(new CompressionStream('gzip'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** A zstd-compressed .blend (Blender 3.0 and later): the master checks the header inside. */
export function zstdBlendBytes(): Uint8Array {
  return new Uint8Array(zstdCompressSync(blendBytes(2048, 'zstd')));
}

/** PNG signature plus bytes that differ per `tag`, standing in for a rendered frame. */
export function pngBytes(tag: string | number, size = 300): Uint8Array {
  const bytes = new Uint8Array(size);
  bytes.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const label = encoder.encode(`frame:${tag};`);
  for (let i = 8; i < size; i++) bytes[i] = label[(i - 8) % label.length]!;
  return bytes;
}

/** Hex SHA-256, for comparing byte arrays without printing them. */
export async function sha256(data: Uint8Array | ArrayBuffer): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', data);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** The seed's submission form: text fields plus the file as `blend_file`. */
export function submitForm(fields: Record<string, string | number>, bytes: Uint8Array | null, fileName = 'scene.blend'): FormData {
  const form = new FormData();
  if (bytes) form.set('blend_file', new File([bytes], fileName));
  for (const [key, value] of Object.entries(fields)) form.set(key, String(value));
  return form;
}

/** `POST /submit_job` as curl -F sends it; answers the raw response. */
export function submitJob(fields: Record<string, string | number>, bytes: Uint8Array | null = blendBytes(), fileName?: string): Promise<Response> {
  return call('/submit_job', { method: 'POST', body: submitForm(fields, bytes, fileName) });
}

/** Submits a job that must be accepted and returns the answer. */
export async function submitOk(fields: Record<string, string | number>, bytes?: Uint8Array): Promise<SubmitJobResponse> {
  return json<SubmitJobResponse>(await submitJob(fields, bytes), 201);
}

/** Registers a render node and returns its id. */
export async function registerWorker(name = 'node'): Promise<string> {
  const res = await postJson('/register_worker', { name, hostname: `${name}.local`, blender_version: '4.2.0', threads: 8 });
  return (await json<RegisterWorkerResponse>(res, 201)).worker_id;
}

/** `POST /get_job` for a node. */
export function getJob(workerId: string): Promise<Response> {
  return postJson('/get_job', { worker_id: workerId });
}

/** Claims work that must be there. */
export async function claim(workerId: string): Promise<TaskAssignment> {
  return json<TaskAssignment>(await getJob(workerId), 200);
}

/** Claims until the master answers 204 and returns every assignment; `fewerThan` of them or more fails the test. */
export async function claimAll(workerId: string, fewerThan = 200): Promise<TaskAssignment[]> {
  const tasks: TaskAssignment[] = [];
  for (;;) {
    const res = await getJob(workerId);
    if (res.status === 204) return tasks;
    tasks.push(await json<TaskAssignment>(res, 200));
    expect(tasks.length).toBeLessThan(fewerThan);
  }
}

/** `POST /update_task_status` on behalf of the node that holds `task`. */
export function update(
  workerId: string,
  task: Pick<TaskAssignment, 'task_id' | 'lease_id'>,
  status: UpdateTaskStatusRequest['status'],
  extra: Partial<UpdateTaskStatusRequest> = {},
): Promise<Response> {
  return postJson('/update_task_status', { worker_id: workerId, task_id: task.task_id, lease_id: task.lease_id, status, ...extra });
}

/** Uploads one frame with the seed's multipart `POST /upload_result`. */
export function uploadFrame(
  workerId: string,
  task: Pick<TaskAssignment, 'task_id' | 'lease_id'>,
  frame: number,
  bytes: Uint8Array,
  fileName = `frame_${frame}.png`,
): Promise<Response> {
  const form = new FormData();
  form.set('worker_id', workerId);
  form.set('task_id', task.task_id);
  form.set('lease_id', task.lease_id);
  form.set('frame', String(frame));
  form.set('render_ms', '1500');
  form.set('file', new File([bytes], fileName, { type: 'image/png' }));
  return call('/upload_result', { method: 'POST', body: form });
}

/** Uploads one frame with the streamed `PUT /tasks/{id}/frames/{frame}?ext=png`. */
export async function putFrame(
  workerId: string,
  task: Pick<TaskAssignment, 'task_id' | 'lease_id'>,
  frame: number,
  bytes: Uint8Array,
  options: { sha256?: string; ext?: string; renderMs?: number } = {},
): Promise<Response> {
  return call(`/tasks/${task.task_id}/frames/${frame}?ext=${options.ext ?? 'png'}`, {
    method: 'PUT',
    headers: {
      'content-type': 'image/png',
      'content-length': String(bytes.length),
      'x-farm-worker-id': workerId,
      'x-farm-lease-id': task.lease_id,
      'x-farm-sha256': options.sha256 ?? (await sha256(bytes)),
      ...(options.renderMs === undefined ? {} : { 'x-farm-render-ms': String(options.renderMs) }),
    },
    body: bytes,
  });
}

/** Uploads every frame of an assignment (multipart) and reports it completed. */
export async function renderAll(workerId: string, task: TaskAssignment): Promise<void> {
  for (const frame of task.frames) await json<UploadResultResponse>(await uploadFrame(workerId, task, frame, pngBytes(frame)), 201);
  await json(await update(workerId, task, 'completed'), 200);
}

export interface RowCounts {
  jobs: number;
  tasks: number;
  frames: number;
  workers: number;
  job_blocklist: number;
  r2_objects: number;
}

/** How many rows each table holds and how many objects R2 holds: "did this change anything?". */
export async function countRows(): Promise<RowCounts> {
  const tables = ['jobs', 'tasks', 'frames', 'workers', 'job_blocklist'] as const;
  const results = await env.DB.batch(tables.map((t) => env.DB.prepare(`SELECT COUNT(*) AS n FROM ${t}`)));
  let r2Objects = 0;
  let cursor: string | undefined;
  for (;;) {
    const page = await env.FILES.list(cursor ? { cursor } : {});
    r2Objects += page.objects.length;
    if (!page.truncated) break;
    cursor = page.cursor;
  }
  const [jobs, tasks, frames, workers, blocklist] = results.map((r) => (r.results[0] as { n: number }).n);
  return { jobs: jobs!, tasks: tasks!, frames: frames!, workers: workers!, job_blocklist: blocklist!, r2_objects: r2Objects };
}

/** One task row as D1 holds it. */
export function taskRow(taskId: string): Promise<Record<string, unknown> | null> {
  return env.DB.prepare(`SELECT * FROM tasks WHERE id = ?`).bind(taskId).first();
}

/** One job row as D1 holds it. */
export function jobRow(jobId: string): Promise<Record<string, unknown> | null> {
  return env.DB.prepare(`SELECT * FROM jobs WHERE id = ?`).bind(jobId).first();
}

/**
 * Empties D1 and R2 and applies the migrations again. Storage is shared by the tests of one
 * file, and the scheduler hands out the best job in the whole farm, so every test starts from an
 * empty farm (setup.ts), to be independent of the others, unless its file shares one (sharedFarm).
 */
export async function emptyFarm(): Promise<void> {
  await reset();
  await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
}

let shared = false;

/**
 * The tests of the calling file share one farm, emptied and then seeded before the first: for
 * files of many checks that change nothing (hundreds of refused requests, against the same job
 * or none), where emptying and seeding the farm for each test again would cost seconds.
 */
export function sharedFarm(seed: () => Promise<void> = async () => {}): void {
  shared = true;
  beforeAll(async () => {
    await emptyFarm();
    await seed();
  });
}

/** setup.ts, before each test. */
export async function emptyFarmUnlessShared(): Promise<void> {
  if (!shared) await emptyFarm();
}

/**
 * Sends a request that must be refused: checks the status, the `{ error }` body and its
 * phrase, and that no table row and no R2 object was added, changed in number, or removed.
 */
export async function expectRefusedUnchanged(send: () => Promise<Response>, status: number, phrase: string | RegExp): Promise<string> {
  const before = await countRows();
  const message = await expectError(await send(), status, phrase);
  expect(await countRows()).toEqual(before);
  return message;
}

/**
 * Makes a task's lease run out `agoMs` before now. LEASE_MS is 60 s in wrangler.toml and the
 * Worker reads the clock itself, so waiting for a real expiry would take a minute: moving
 * `lease_expires_at` into the past is exactly the state a node that stopped renewing leaves behind.
 */
export async function expireLease(taskId: string, agoMs = 1_000): Promise<void> {
  const { meta } = await env.DB.prepare(`UPDATE tasks SET lease_expires_at = ? WHERE id = ?`)
    .bind(Date.now() - agoMs, taskId)
    .run();
  expect(meta.changes).toBe(1);
}

/** `GET /job_status/{id}`, answered 200. */
export async function jobStatus(jobId: string): Promise<JobStatusResponse> {
  return json<JobStatusResponse>(await call(`/job_status/${jobId}`), 200);
}

/** A webhook call as its receiver saw it. */
export interface WebhookCall {
  url: string;
  method: string | undefined;
  headers: Headers;
  /** The raw body, as signed. */
  body: string;
  payload: WebhookPayload;
}

/**
 * Makes the isolate's global fetch a webhook receiver for each test of the calling file or
 * describe: the master runs in this isolate, so its calls (after a response, or from the cron)
 * land here instead of on the network. Retries come after 5 ms instead of seconds.
 * `calls` is emptied before each test; a test sets `answers`, what the receiver answers call
 * after call: a status, or 'hang' (no answer until the caller gives up); after them, `otherwise`.
 */
export function webhookReceiver(otherwise: number): { calls: WebhookCall[]; answers: (number | 'hang')[] } {
  const receiver = { calls: [] as WebhookCall[], answers: [] as (number | 'hang')[] };
  const timing = { ...webhookTiming };
  beforeEach(() => {
    receiver.calls.length = 0;
    receiver.answers = [];
    webhookTiming.delaysMs = [0, 5, 5, 5];
    vi.stubGlobal('fetch', async (url: string, init: RequestInit) => {
      const body = String(init.body);
      receiver.calls.push({ url, method: init.method, headers: new Headers(init.headers), body, payload: JSON.parse(body) as WebhookPayload });
      const answer = receiver.answers.shift() ?? otherwise;
      if (answer === 'hang') {
        // Like a receiver that accepts the connection and never answers: only the caller's timeout ends it.
        return new Promise<Response>((_, reject) => init.signal!.addEventListener('abort', () => reject(init.signal!.reason)));
      }
      return new Response(null, { status: answer });
    });
  });
  afterEach(() => {
    vi.unstubAllGlobals();
    Object.assign(webhookTiming, timing);
  });
  return receiver;
}
