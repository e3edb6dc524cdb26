/**
 * Bad input against every endpoint, enumerated from the app's own route table: a route added
 * without cases here fails the first test. Each endpoint gets the classes of bad input that apply
 * to what it reads (path parameters, query strings, JSON, multipart or raw bodies, leases), and
 * every answer must be a 4xx with `{ "error": "..." }` that changed nothing: no job, task, frame,
 * node or blocklist row and no R2 object appears or disappears. bad-input.test.ts has the
 * detailed messages; this file is about coverage.
 */
import { describe, expect, it } from 'vitest';
import { app } from '../../edge/app.ts';
import { MAX_PREVIEW_BYTES } from '../../protocol/api.ts';
import type { SubmitJobResponse, TaskAssignment, UploadState } from '../../protocol/schemas.ts';
import { blendBytes, call, claim, countRows, json, pngBytes, postJson, registerWorker, sha256, submitForm, submitOk, sharedFarm } from './helpers.ts';

const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000';
const MAX_JSON_BYTES = 256 * 1024;
const MAX_UPLOAD_BYTES = 100 * 1024 * 1024;

interface Fixture {
  job: SubmitJobResponse;
  /** A node holding `task`, and another node that does not. */
  worker: string;
  task: TaskAssignment;
  other: string;
  /** A stored blob (the job's .blend) and an upload in progress of another one. */
  blobSha: string;
  uploadSha: string;
  uploadId: string;
}

let f: Fixture;

// The refusals change nothing: one farm serves them all.
sharedFarm(async () => {
  const job = await submitOk({ start_frame: 1, end_frame: 4, chunk_size: 2 });
  const worker = await registerWorker('victim');
  const task = await claim(worker);
  const other = await registerWorker('intruder');
  // Frame 1 is stored (so its preview may be sent); frame 2 is not.
  await json(await call(`/tasks/${task.task_id}/frames/1?ext=png`, await rawInit({ worker, task } as Fixture, { bytes: pngBytes(1) })), 201);
  const uploadSha = await sha256(new TextEncoder().encode('a blob being uploaded'));
  const upload = await json<UploadState>(await postJson(`/blobs/${uploadSha}/uploads`, { size: 21 }), 201);
  f = { job, worker, task, other, blobSha: job.blend_file.slice(0, 64), uploadSha, uploadId: upload.upload_id! };
});

// ---------------------------------------------------------------------------------------------
// Building requests

type Send = () => Promise<Response>;
interface BadCase {
  what: string;
  send: (f: Fixture) => Promise<Response>;
  /**
   * The URL normalizes to another path ("/jobs/x/.." is "/jobs"), so the request is not for this
   * endpoint at all: any answer but a 5xx will do, and still nothing may change.
   */
  elsewhere?: boolean;
}
const bad = (what: string, send: (f: Fixture) => Promise<Response>): BadCase => ({ what, send });

const jsonInit = (method: string, body: unknown): RequestInit => ({
  method,
  headers: { 'content-type': 'application/json' },
  body: typeof body === 'string' ? body : JSON.stringify(body),
});

/** A body whose Content-Length says `length` but of which nothing is ever sent. */
function declaredOnly(length: number): ReadableStream {
  return new FixedLengthStream(length).readable;
}

/** A PNG-ish body with the lease headers of `worker`/`task`, for raw uploads. */
async function rawInit(f: Fixture, over: { worker?: string; lease?: string; bytes?: Uint8Array; headers?: Record<string, string> } = {}): Promise<RequestInit> {
  const bytes = over.bytes ?? pngBytes('raw');
  return {
    method: 'PUT',
    headers: {
      'content-type': 'image/png',
      'content-length': String(bytes.length),
      'x-farm-worker-id': over.worker ?? f.worker,
      'x-farm-lease-id': over.lease ?? f.task.lease_id,
      'x-farm-sha256': await sha256(bytes),
      ...over.headers,
    },
    body: bytes,
  };
}

/** The classes every JSON endpoint must refuse, around a body it would accept. */
function jsonCases(method: string, path: (f: Fixture) => string, valid: (f: Fixture) => Record<string, unknown>): BadCase[] {
  const send =
    (body: unknown, contentType = 'application/json') =>
    (fx: Fixture) =>
      call(path(fx), { method, headers: { 'content-type': contentType }, body: typeof body === 'function' ? JSON.stringify(body(fx)) : (body as string) });
  const cases = [
    bad('invalid JSON', send('{"a": ')),
    bad('100,000 unclosed "["', send('['.repeat(100_000))),
    bad('100,000 nested arrays', send('['.repeat(100_000) + ']'.repeat(100_000))),
    bad('40,000 nested objects', send(`${'{"a":'.repeat(40_000)}1${'}'.repeat(40_000)}`)),
    bad('a JSON array instead of an object', send('[]')),
    bad('null', send('null')),
    bad('an empty body', send('')),
    bad('the right JSON as text/plain', (fx) => call(path(fx), { method, headers: { 'content-type': 'text/plain' }, body: JSON.stringify(valid(fx)) })),
    bad('the right JSON as a form', (fx) =>
      call(path(fx), { method, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: JSON.stringify(valid(fx)) }),
    ),
    bad('no Content-Type', (fx) => call(path(fx), { method, body: new TextEncoder().encode(JSON.stringify(valid(fx))) })),
    bad(`a body over MAX_JSON_BYTES`, (fx) => call(path(fx), jsonInit(method, { ...valid(fx), padding: 'x'.repeat(MAX_JSON_BYTES) }))),
    bad('a body over MAX_JSON_BYTES streamed without a Content-Length', (fx) => {
      const bytes = new TextEncoder().encode(JSON.stringify({ ...valid(fx), padding: 'x'.repeat(MAX_JSON_BYTES) }));
      const stream = new ReadableStream({ start: (c) => (c.enqueue(bytes), c.close()) });
      return call(path(fx), { method, headers: { 'content-type': 'application/json' }, body: stream });
    }),
    bad('an empty object (required fields missing)', (fx) => call(path(fx), jsonInit(method, {}))),
    bad('a body cut off mid-way (the connection was reset)', (fx) => {
      const bytes = new TextEncoder().encode(JSON.stringify(valid(fx)));
      const { readable, writable } = new FixedLengthStream(bytes.length);
      const writer = writable.getWriter();
      void writer
        .write(bytes.slice(0, Math.floor(bytes.length / 2)))
        .then(() => writer.abort('reset'))
        .catch(() => {});
      return call(path(fx), { method, headers: { 'content-type': 'application/json', 'content-length': String(bytes.length) }, body: readable });
    }),
  ];
  // Every field of the valid body, one at a time, given a value of the wrong type.
  const wrongType = (value: unknown): unknown =>
    typeof value === 'number' ? 'abc' : typeof value === 'string' ? { not: 'a string' } : Array.isArray(value) ? { not: 'an array' } : 42;
  const fields = Object.keys(valid(PLACEHOLDER));
  for (const field of fields) {
    cases.push(bad(`${field} of the wrong type`, (fx) => call(path(fx), jsonInit(method, { ...valid(fx), [field]: wrongType(valid(fx)[field]) }))));
  }
  return cases;
}

/** A manifest the master would accept (its one file need not be uploaded to be posted). */
const VALID_MANIFEST = { version: 1, main_blend: 'scene.blend', files: [{ path: 'scene.blend', sha256: 'a'.repeat(64), size: 1 }] };

/** Stand-in used only to list a valid body's field names before the fixture exists. */
const PLACEHOLDER: Fixture = {
  job: { job_id: UNKNOWN_ID, status: 'queued', total_frames: 1, blend_file: `${'0'.repeat(64)}.blend` },
  worker: UNKNOWN_ID,
  task: { task_id: UNKNOWN_ID, lease_id: UNKNOWN_ID } as TaskAssignment,
  other: UNKNOWN_ID,
  blobSha: '0'.repeat(64),
  uploadSha: '0'.repeat(64),
  uploadId: UNKNOWN_ID,
};

/** Frame numbers no endpoint may take: negative, fractional, past Blender's maximum, not a number. */
const BAD_FRAMES: [string, unknown][] = [
  ['negative', -1],
  ['fractional', 1.5],
  ['huge', 1_048_575],
  ['astronomically huge', 1e300],
  ['not a number', 'abc'],
];

/** Names with path tricks (in a body, where nothing URL-decodes them). */
const BAD_NAMES = ['..', '../../etc/passwd', '/etc/passwd', 'scene\u0000.blend', '..\\..\\windows\\win.ini', 'C:\\scenes\\x', 'a\nb'];

/** The seed's multipart forms: bodies that are cut short, mislabelled, too big or incomplete. */
function multipartCases(path: string, fields: (f: Fixture) => Record<string, string>, fileField: string, file: () => Uint8Array): BadCase[] {
  const form = (fx: Fixture, over: Record<string, string | null> = {}, fileBytes: Uint8Array | null = file(), fileName = 'x.bin') => {
    const body = new FormData();
    for (const [k, v] of Object.entries({ ...fields(fx), ...over })) if (v !== null) body.set(k, v);
    if (fileBytes) body.set(fileField, new File([fileBytes], fileName));
    return body;
  };
  const encoded = async (body: FormData) => {
    const request = new Request('http://farm', { method: 'POST', body });
    return { type: request.headers.get('content-type')!, bytes: new Uint8Array(await request.arrayBuffer()) };
  };
  const cases = [
    bad('the form as JSON', (fx) => call(path, jsonInit('POST', fields(fx)))),
    bad('a truncated body', async (fx) => {
      const { type, bytes } = await encoded(form(fx));
      return call(path, { method: 'POST', headers: { 'content-type': type }, body: bytes.slice(0, bytes.length - 80) });
    }),
    bad('a boundary that does not match', async (fx) => {
      const { bytes } = await encoded(form(fx));
      return call(path, { method: 'POST', headers: { 'content-type': 'multipart/form-data; boundary=nope' }, body: bytes });
    }),
    bad('multipart/form-data without a boundary', async (fx) => {
      const { bytes } = await encoded(form(fx));
      return call(path, { method: 'POST', headers: { 'content-type': 'multipart/form-data' }, body: bytes });
    }),
    bad('no Content-Length (streamed)', async (fx) => {
      const { type, bytes } = await encoded(form(fx));
      return call(path, { method: 'POST', headers: { 'content-type': type }, body: new ReadableStream({ start: (c) => (c.enqueue(bytes), c.close()) }) });
    }),
    bad('a body over MAX_UPLOAD_BYTES', () =>
      call(path, {
        method: 'POST',
        headers: { 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(MAX_UPLOAD_BYTES + 1) },
        body: declaredOnly(MAX_UPLOAD_BYTES + 1),
      }),
    ),
    bad(`no ${fileField}`, (fx) => call(path, { method: 'POST', body: form(fx, {}, null) })),
    bad(`an empty ${fileField}`, (fx) => call(path, { method: 'POST', body: form(fx, {}, new Uint8Array(0)) })),
    bad(`${fileField} as a text field`, (fx) => call(path, { method: 'POST', body: form(fx, { [fileField]: 'x' }, null) })),
  ];
  for (const field of Object.keys(fields(PLACEHOLDER))) {
    cases.push(bad(`no ${field}`, (fx) => call(path, { method: 'POST', body: form(fx, { [field]: null }) })));
    cases.push(
      bad(`${field} given as a file`, (fx) => {
        const body = form(fx, { [field]: null });
        body.set(field, new File([new Uint8Array([1, 2, 3])], 'field.bin'));
        return call(path, { method: 'POST', body });
      }),
    );
  }
  return cases;
}

/** Raw (streamed) uploads under a lease: missing or lying headers, empty, too big, someone else's lease. */
function rawCases(path: (f: Fixture) => string, maxBytes: number): BadCase[] {
  return [
    bad('no Content-Length (streamed)', async (fx) => {
      const init = await rawInit(fx);
      const headers = { ...(init.headers as Record<string, string>) };
      delete headers['content-length'];
      return call(path(fx), { ...init, headers, body: new ReadableStream({ start: (c) => (c.enqueue(pngBytes('s')), c.close()) }) });
    }),
    bad('an empty body', async (fx) => call(path(fx), await rawInit(fx, { bytes: new Uint8Array(0) }))),
    bad('a declared length over the limit', async (fx) => {
      const init = await rawInit(fx);
      return call(path(fx), {
        ...init,
        headers: { ...(init.headers as Record<string, string>), 'content-length': String(maxBytes + 1) },
        body: declaredOnly(maxBytes + 1),
      });
    }),
    bad("another node's lease_id", async (fx) => call(path(fx), await rawInit(fx, { worker: fx.other }))),
    bad('a lease_id that is not an id', async (fx) => call(path(fx), await rawInit(fx, { lease: '../../etc/passwd' }))),
    bad('an unknown lease_id', async (fx) => call(path(fx), await rawInit(fx, { lease: UNKNOWN_ID }))),
    bad('a body cut off before its Content-Length', async (fx) => {
      const bytes = pngBytes('cut', 200);
      const { readable, writable } = new FixedLengthStream(400);
      const writer = writable.getWriter();
      void writer
        .write(bytes)
        .then(() => writer.abort('the node died'))
        .catch(() => {});
      const init = await rawInit(fx, { bytes });
      return call(path(fx), { ...init, headers: { ...(init.headers as Record<string, string>), 'content-length': '400' }, body: readable });
    }),
    bad('no worker id header', async (fx) => {
      const init = await rawInit(fx);
      const headers = { ...(init.headers as Record<string, string>) };
      delete headers['x-farm-worker-id'];
      return call(path(fx), { ...init, headers });
    }),
  ];
}

// ---------------------------------------------------------------------------------------------
// What each endpoint reads, beyond its path parameters (those are probed for every route below).

/**
 * Every route of the app, by "METHOD /path" as registered. `init` is a request the endpoint
 * would accept, used when one path parameter is swapped for a bad one; `cases` are the bad inputs
 * in what it reads besides. Endpoints that read nothing but their path say so with `cases: []`.
 */
const ROUTES: Record<
  string,
  {
    init?: (f: Fixture) => Promise<RequestInit> | RequestInit;
    cases: BadCase[];
    /** Path parameters for which an unknown value is a fine request (e.g. the hash of a new upload). */
    unknownIsValid?: string[];
  }
> = {
  'GET /time': { cases: [] },
  // The API description: no input at all.
  'GET /openapi.json': { cases: [] },
  'GET /docs': { cases: [] },
  'GET /addon.zip': { cases: [] },

  'POST /submit_job': {
    cases: [
      ...multipartCases(
        '/submit_job',
        () => ({ start_frame: '1', end_frame: '2' }),
        'blend_file',
        () => blendBytes(),
      ),
      ...BAD_FRAMES.flatMap(([kind, value]) => [
        bad(`a ${kind} start_frame`, () =>
          call('/submit_job', { method: 'POST', body: submitForm({ start_frame: String(value), end_frame: 10 }, blendBytes()) }),
        ),
        bad(`a ${kind} end_frame`, () => call('/submit_job', { method: 'POST', body: submitForm({ start_frame: 1, end_frame: String(value) }, blendBytes()) })),
      ]),
      bad('start_frame after end_frame', () => call('/submit_job', { method: 'POST', body: submitForm({ start_frame: 5, end_frame: 4 }, blendBytes()) })),
      bad('a file that is not a .blend', () => call('/submit_job', { method: 'POST', body: submitForm({ start_frame: 1, end_frame: 2 }, pngBytes('png')) })),
      bad('a .blend cut to its first 4 bytes', () =>
        call('/submit_job', { method: 'POST', body: submitForm({ start_frame: 1, end_frame: 2 }, blendBytes().slice(0, 4)) }),
      ),
      ...BAD_NAMES.map((name) =>
        bad(`a job name with a path trick (${JSON.stringify(name)})`, () =>
          call('/submit_job', { method: 'POST', body: submitForm({ start_frame: 1, end_frame: 2, name }, blendBytes()) }),
        ),
      ),
      bad('chunk_size 0, priority 101 and max_attempts 0.5', () =>
        call('/submit_job', {
          method: 'POST',
          body: submitForm({ start_frame: 1, end_frame: 2, chunk_size: 0, priority: 101, max_attempts: 0.5 }, blendBytes()),
        }),
      ),
    ],
  },
  'POST /register_worker': {
    cases: [
      ...jsonCases(
        'POST',
        () => '/register_worker',
        () => ({ name: 'box', hostname: 'box.lan', blender_version: '3.4.1', threads: 2 }),
      ),
      ...BAD_NAMES.map((name) => bad(`a node name with a path trick (${JSON.stringify(name)})`, () => postJson('/register_worker', { name }))),
      bad('negative threads', () => postJson('/register_worker', { name: 'box', threads: -1 })),
      bad('fractional threads', () => postJson('/register_worker', { name: 'box', threads: 1.5 })),
      bad('a worker_id that is not an id', () => postJson('/register_worker', { name: 'box', worker_id: '../../x' })),
    ],
  },
  'POST /get_job': {
    cases: [
      ...jsonCases(
        'POST',
        () => '/get_job',
        (fx) => ({ worker_id: fx.other, wait_ms: 0, claim_id: UNKNOWN_ID }),
      ),
      bad('an unknown worker', () => postJson('/get_job', { worker_id: UNKNOWN_ID })),
      bad('a negative wait', (fx) => postJson('/get_job', { worker_id: fx.other, wait_ms: -1 })),
      bad('a fractional wait', (fx) => postJson('/get_job', { worker_id: fx.other, wait_ms: 1.5 })),
      bad('a wait over 30 s', (fx) => postJson('/get_job', { worker_id: fx.other, wait_ms: 30_001 })),
      bad('a claim_id that is not an id', (fx) => postJson('/get_job', { worker_id: fx.other, claim_id: 'x/../y' })),
    ],
  },
  'POST /update_task_status': {
    cases: [
      ...jsonCases(
        'POST',
        () => '/update_task_status',
        (fx) => ({ worker_id: fx.worker, task_id: fx.task.task_id, lease_id: fx.task.lease_id, status: 'running' }),
      ),
      ...(['running', 'completed', 'failed', 'released'] as const).map((status) =>
        bad(`"${status}" with another node's lease_id`, (fx) =>
          postJson('/update_task_status', { worker_id: fx.other, task_id: fx.task.task_id, lease_id: fx.task.lease_id, status }),
        ),
      ),
      bad('an unknown task', (fx) =>
        postJson('/update_task_status', { worker_id: fx.worker, task_id: UNKNOWN_ID, lease_id: fx.task.lease_id, status: 'running' }),
      ),
      bad('an unknown worker', (fx) =>
        postJson('/update_task_status', { worker_id: UNKNOWN_ID, task_id: fx.task.task_id, lease_id: fx.task.lease_id, status: 'running' }),
      ),
      bad('a status that does not exist', (fx) =>
        postJson('/update_task_status', { worker_id: fx.worker, task_id: fx.task.task_id, lease_id: fx.task.lease_id, status: 'paused' }),
      ),
      bad('"completed" before every frame was uploaded', (fx) =>
        postJson('/update_task_status', { worker_id: fx.worker, task_id: fx.task.task_id, lease_id: fx.task.lease_id, status: 'completed' }),
      ),
      ...BAD_FRAMES.map(([kind, value]) =>
        bad(`a ${kind} current_frame`, (fx) =>
          postJson('/update_task_status', {
            worker_id: fx.worker,
            task_id: fx.task.task_id,
            lease_id: fx.task.lease_id,
            status: 'running',
            current_frame: value,
          }),
        ),
      ),
      bad('a negative peak_mem_mb', (fx) =>
        postJson('/update_task_status', { worker_id: fx.worker, task_id: fx.task.task_id, lease_id: fx.task.lease_id, status: 'running', peak_mem_mb: -5 }),
      ),
      bad('51 warnings', (fx) => postJson('/update_task_status', { ...lease(fx), status: 'running', warnings: Array.from({ length: 51 }, (_, i) => `w${i}`) })),
      bad('a warning of 1001 characters', (fx) => postJson('/update_task_status', { ...lease(fx), status: 'running', warnings: ['x'.repeat(1001)] })),
      bad('an empty warning', (fx) => postJson('/update_task_status', { ...lease(fx), status: 'running', warnings: [''] })),
      bad('warnings that are not strings', (fx) => postJson('/update_task_status', { ...lease(fx), status: 'running', warnings: [{ nested: ['x'] }] })),
      bad('a message over 20,000 characters', (fx) => postJson('/update_task_status', { ...lease(fx), status: 'failed', message: 'x'.repeat(20_001) })),
    ],
  },
  'POST /upload_result': {
    cases: [
      ...multipartCases(
        '/upload_result',
        (fx) => ({ worker_id: fx.worker, task_id: fx.task.task_id, lease_id: fx.task.lease_id, frame: '1' }),
        'file',
        () => pngBytes('mp'),
      ),
      ...BAD_FRAMES.map(([kind, value]) => bad(`a ${kind} frame`, (fx) => uploadForm(fx, { frame: String(value) }))),
      bad('a frame outside the task', (fx) => uploadForm(fx, { frame: '3' })),
      bad("another node's lease_id", (fx) => uploadForm(fx, { worker_id: fx.other })),
      bad('an unknown task', (fx) => uploadForm(fx, { task_id: UNKNOWN_ID })),
      ...['frame.sh', 'frame.png\u0000.sh', '..', 'frame.'].map((name) => bad(`a file named ${JSON.stringify(name)}`, (fx) => uploadForm(fx, {}, name))),
    ],
  },
  'PUT /tasks/:task_id/frames/:frame': {
    init: (fx) => rawInit(fx),
    cases: [
      ...rawCases((fx) => `/tasks/${fx.task.task_id}/frames/1?ext=png`, MAX_UPLOAD_BYTES),
      ...['', 'sh', '..%2fx', 'png%00', 'PNG%5c..', '%2e%2e'].map((ext) =>
        bad(`?ext=${ext}`, async (fx) => call(`/tasks/${fx.task.task_id}/frames/1?ext=${ext}`, await rawInit(fx))),
      ),
      bad('no ?ext', async (fx) => call(`/tasks/${fx.task.task_id}/frames/1`, await rawInit(fx))),
      bad('an x-farm-sha256 that is not a SHA-256', async (fx) =>
        call(`/tasks/${fx.task.task_id}/frames/1?ext=png`, await rawInit(fx, { headers: { 'x-farm-sha256': 'zz' } })),
      ),
      bad('bytes that do not match x-farm-sha256', async (fx) =>
        call(`/tasks/${fx.task.task_id}/frames/1?ext=png`, await rawInit(fx, { headers: { 'x-farm-sha256': '0'.repeat(64) } })),
      ),
      bad('a negative x-farm-render-ms', async (fx) =>
        call(`/tasks/${fx.task.task_id}/frames/1?ext=png`, await rawInit(fx, { headers: { 'x-farm-render-ms': '-1' } })),
      ),
      bad('a frame outside the task', async (fx) => call(`/tasks/${fx.task.task_id}/frames/3?ext=png`, await rawInit(fx))),
    ],
  },
  'PUT /tasks/:task_id/log': {
    init: (fx) => rawInit(fx),
    cases: rawCases((fx) => `/tasks/${fx.task.task_id}/log`, MAX_UPLOAD_BYTES),
  },
  'PUT /tasks/:task_id/frames/:frame/preview': {
    init: (fx) => rawInit(fx),
    cases: [
      ...rawCases((fx) => `/tasks/${fx.task.task_id}/frames/1/preview`, MAX_PREVIEW_BYTES),
      bad('a preview that is not an image type', async (fx) =>
        call(`/tasks/${fx.task.task_id}/frames/1/preview`, await rawInit(fx, { headers: { 'content-type': 'text/html' } })),
      ),
      bad('a preview of a frame not uploaded yet', async (fx) => call(`/tasks/${fx.task.task_id}/frames/2/preview`, await rawInit(fx))),
    ],
  },
  'PUT /tasks/:task_id/output': {
    init: (fx) => rawInit(fx),
    cases: [
      ...rawCases((fx) => `/tasks/${fx.task.task_id}/output`, MAX_UPLOAD_BYTES),
      bad("a render task's output (renders upload frames)", async (fx) => call(`/tasks/${fx.task.task_id}/output`, await rawInit(fx))),
      bad('an output as text/html', async (fx) => call(`/tasks/${fx.task.task_id}/output`, await rawInit(fx, { headers: { 'content-type': 'text/html' } }))),
    ],
  },
  'GET /tasks/:task_id/inputs/:n': {
    cases: [
      bad('a render task (it has no inputs)', async (fx) => call(`/tasks/${fx.task.task_id}/inputs/0`, { headers: leaseHeaders(fx) })),
      bad("another node's lease", async (fx) => call(`/tasks/${fx.task.task_id}/inputs/0`, { headers: leaseHeaders(fx, fx.other) })),
      bad('no lease headers', (fx) => call(`/tasks/${fx.task.task_id}/inputs/0`)),
      bad('a negative input number', async (fx) => call(`/tasks/${fx.task.task_id}/inputs/-1`, { headers: leaseHeaders(fx) })),
    ],
  },
  'GET /download_blend/:name': {
    cases: [
      bad('a .blend name that names a .exe', () => call(`/download_blend/${'a'.repeat(64)}.exe`)),
      bad('the real name in upper case', (fx) => call(`/download_blend/${fx.job.blend_file.toUpperCase()}`)),
    ],
  },
  'GET /blobs/:sha256': { cases: [bad('a SHA-256 in upper case', (fx) => call(`/blobs/${fx.blobSha.toUpperCase()}`))] },
  'POST /blobs/:sha256/uploads': {
    init: () => jsonInit('POST', { size: 21 }),
    unknownIsValid: ['sha256'],
    cases: [
      ...jsonCases(
        'POST',
        (fx) => `/blobs/${fx.uploadSha}/uploads`,
        () => ({ size: 21 }),
      ),
      bad('a negative size', (fx) => postJson(`/blobs/${fx.uploadSha}/uploads`, { size: -1 })),
      bad('a size of 0', (fx) => postJson(`/blobs/${fx.uploadSha}/uploads`, { size: 0 })),
      bad('a fractional size', (fx) => postJson(`/blobs/${fx.uploadSha}/uploads`, { size: 20.5 })),
      bad('a size over MAX_BLOB_BYTES', () => postJson(`/blobs/${'e'.repeat(64)}/uploads`, { size: 1e15 })),
      bad('a part_size under 5 MiB', (fx) => postJson(`/blobs/${fx.uploadSha}/uploads`, { size: 21, part_size: 1024 })),
      bad('the size of a stored blob that it does not have', (fx) => postJson(`/blobs/${fx.blobSha}/uploads`, { size: 3 })),
    ],
  },
  'PUT /blobs/:sha256/uploads/:upload_id/parts/:n': {
    init: () => ({ method: 'PUT', headers: { 'content-length': '21' }, body: new TextEncoder().encode('a blob being uploaded') }),
    cases: [
      bad('no Content-Length (streamed)', (fx) =>
        call(`/blobs/${fx.uploadSha}/uploads/${fx.uploadId}/parts/1`, {
          method: 'PUT',
          body: new ReadableStream({ start: (c) => (c.enqueue(new Uint8Array(21)), c.close()) }),
        }),
      ),
      bad('a declared length over the limit', (fx) =>
        call(`/blobs/${fx.uploadSha}/uploads/${fx.uploadId}/parts/1`, {
          method: 'PUT',
          headers: { 'content-length': String(MAX_UPLOAD_BYTES + 1) },
          body: declaredOnly(MAX_UPLOAD_BYTES + 1),
        }),
      ),
      bad('a part cut off before its Content-Length', (fx) => {
        const { readable, writable } = new FixedLengthStream(21);
        const writer = writable.getWriter();
        void writer
          .write(new Uint8Array(10))
          .then(() => writer.abort('the client died'))
          .catch(() => {});
        return call(`/blobs/${fx.uploadSha}/uploads/${fx.uploadId}/parts/1`, { method: 'PUT', headers: { 'content-length': '21' }, body: readable });
      }),
      bad('an empty part', (fx) =>
        call(`/blobs/${fx.uploadSha}/uploads/${fx.uploadId}/parts/1`, { method: 'PUT', headers: { 'content-length': '0' }, body: new Uint8Array(0) }),
      ),
      bad('part 0', (fx) => call(`/blobs/${fx.uploadSha}/uploads/${fx.uploadId}/parts/0`, { method: 'PUT', body: new Uint8Array(21) })),
      bad('a part past the last', (fx) => call(`/blobs/${fx.uploadSha}/uploads/${fx.uploadId}/parts/2`, { method: 'PUT', body: new Uint8Array(21) })),
      bad('a part of the wrong size', (fx) => call(`/blobs/${fx.uploadSha}/uploads/${fx.uploadId}/parts/1`, { method: 'PUT', body: new Uint8Array(5) })),
      bad("another blob's upload id", (fx) => call(`/blobs/${fx.blobSha}/uploads/${fx.uploadId}/parts/1`, { method: 'PUT', body: new Uint8Array(21) })),
    ],
  },
  'POST /blobs/:sha256/uploads/:upload_id/complete': {
    cases: [bad('completing before any part arrived', (fx) => call(`/blobs/${fx.uploadSha}/uploads/${fx.uploadId}/complete`, { method: 'POST' }))],
  },
  'DELETE /blobs/:sha256/uploads/:upload_id': {
    cases: [bad("another blob's upload id", (fx) => call(`/blobs/${fx.blobSha}/uploads/${fx.uploadId}`, { method: 'DELETE' }))],
  },
  'POST /jobs': {
    cases: [
      ...jsonCases(
        'POST',
        () => '/jobs',
        (fx) => ({ blob_sha256: fx.blobSha, kind: 'blend', start_frame: 1, end_frame: 2 }),
      ),
      ...BAD_FRAMES.flatMap(([kind, value]) => [
        bad(`a ${kind} start_frame`, (fx) => postJson('/jobs', { blob_sha256: fx.blobSha, kind: 'blend', start_frame: value, end_frame: 2 })),
        bad(`a ${kind} end_frame`, (fx) => postJson('/jobs', { blob_sha256: fx.blobSha, kind: 'blend', start_frame: 1, end_frame: value })),
      ]),
      bad('start_frame after end_frame', (fx) => postJson('/jobs', { blob_sha256: fx.blobSha, kind: 'blend', start_frame: 3, end_frame: 2 })),
      bad('a blob that was never uploaded', () => postJson('/jobs', { blob_sha256: 'd'.repeat(64), kind: 'blend', start_frame: 1, end_frame: 2 })),
      bad('a .blend blob sent as a zip', (fx) => postJson('/jobs', { blob_sha256: fx.blobSha, kind: 'zip', start_frame: 1, end_frame: 2 })),
      bad('a field the API does not have', (fx) => postJson('/jobs', { blob_sha256: fx.blobSha, kind: 'blend', start_frame: 1, end_frame: 2, admin: true })),
      ...[...BAD_NAMES, 'textures/x.png'].map((main) =>
        bad(`main_blend ${JSON.stringify(main)}`, (fx) =>
          postJson('/jobs', { blob_sha256: fx.blobSha, kind: 'zip', main_blend: main, start_frame: 1, end_frame: 2 }),
        ),
      ),
      ...BAD_NAMES.map((name) =>
        bad(`a job name with a path trick (${JSON.stringify(name)})`, (fx) =>
          postJson('/jobs', { blob_sha256: fx.blobSha, kind: 'blend', start_frame: 1, end_frame: 2, name }),
        ),
      ),
    ],
  },
  'POST /manifests': {
    cases: [
      ...jsonCases(
        'POST',
        () => '/manifests',
        () => VALID_MANIFEST,
      ),
      ...BAD_NAMES.map((path) =>
        bad(`a file path with a path trick (${JSON.stringify(path)})`, () =>
          postJson('/manifests', { ...VALID_MANIFEST, files: [...VALID_MANIFEST.files, { path, sha256: 'b'.repeat(64), size: 1 }] }),
        ),
      ),
      bad('a path twice', () => postJson('/manifests', { ...VALID_MANIFEST, files: [...VALID_MANIFEST.files, ...VALID_MANIFEST.files] })),
      bad('a main_blend it does not list', () => postJson('/manifests', { ...VALID_MANIFEST, main_blend: 'other.blend' })),
    ],
  },
  'GET /manifests/:sha256/files/:blob': {
    cases: [
      bad('a file hash in upper case', (fx) => call(`/manifests/${fx.blobSha}/files/${fx.blobSha.toUpperCase()}`)),
      bad('a manifest that lists no such file', (fx) => call(`/manifests/${fx.blobSha}/files/${fx.blobSha}`)),
    ],
  },
  'GET /jobs': {
    cases: [
      ...['0', '-1', '1.5', 'abc', '1e9', '%00'].map((limit) => bad(`?limit=${limit}`, () => call(`/jobs?limit=${limit}`))),
      bad('a cursor the API never returned', () => call('/jobs?cursor=..%2f..%2fetc')),
      bad('a status that does not exist', () => call('/jobs?status=sleeping')),
    ],
  },
  'GET /job_status/:job_id': { cases: [] },
  'GET /jobs/:job_id': { cases: [] },
  'PATCH /jobs/:job_id': {
    init: () => jsonInit('PATCH', { priority: 60 }),
    cases: [
      ...jsonCases(
        'PATCH',
        (fx) => `/jobs/${fx.job.job_id}`,
        () => ({ priority: 60 }),
      ),
      ...[-1, 101, 1.5].map((priority) => bad(`priority ${priority}`, (fx) => call(`/jobs/${fx.job.job_id}`, jsonInit('PATCH', { priority })))),
      ...['file:///etc/passwd', 'http://user:secret@example.com/hook', 'javascript:alert(1)', 'not a url'].map((url) =>
        bad(`webhook_url ${url}`, (fx) => call(`/jobs/${fx.job.job_id}`, jsonInit('PATCH', { webhook_url: url }))),
      ),
      bad('a field that cannot change', (fx) => call(`/jobs/${fx.job.job_id}`, jsonInit('PATCH', { start_frame: 0 }))),
    ],
  },
  'DELETE /jobs/:job_id': { cases: [] },
  'GET /jobs/:job_id/webhook': { cases: [] },
  'POST /jobs/:job_id/pause': { cases: [] },
  'POST /jobs/:job_id/resume': { cases: [] },
  'POST /jobs/:job_id/cancel': { cases: [] },
  'POST /jobs/:job_id/requeue_failed': { cases: [] },
  'GET /jobs/:job_id/frames': {
    cases: [
      ...['-1', '1.5', 'abc', '1048575'].map((after) => bad(`?after=${after}`, (fx) => call(`/jobs/${fx.job.job_id}/frames?after=${after}`))),
      ...['0', '10001', 'x'].map((limit) => bad(`?limit=${limit}`, (fx) => call(`/jobs/${fx.job.job_id}/frames?limit=${limit}`))),
    ],
  },
  'GET /jobs/:job_id/frames.zip': { cases: [] },
  'GET /jobs/:job_id/video': { cases: [bad('a job that did not ask for a preview video', (fx) => call(`/jobs/${fx.job.job_id}/video`))] },
  'GET /jobs/:job_id/frames/:frame': { cases: [] },
  'GET /jobs/:job_id/frames/:frame/preview': { cases: [] },
  'GET /jobs/:job_id/tasks': { cases: [] },
  'GET /jobs/:job_id/tasks/:task_id/log': { cases: [bad('a task of another job', (fx) => call(`/jobs/${UNKNOWN_ID}/tasks/${fx.task.task_id}/log`))] },
  'GET /jobs/:job_id/blocklist': { cases: [] },
  'GET /jobs/:job_id/storage': { cases: [] },
  'GET /workers': { cases: [] },
  'GET /workers/:worker_id': { cases: [] },
  'POST /workers/:worker_id/drain': { cases: [] },
  'POST /workers/:worker_id/disable': { cases: [] },
  'POST /workers/:worker_id/enable': { cases: [] },
};

function leaseHeaders(fx: Fixture, worker = fx.worker): Record<string, string> {
  return { 'x-farm-worker-id': worker, 'x-farm-lease-id': fx.task.lease_id };
}

function lease(fx: Fixture) {
  return { worker_id: fx.worker, task_id: fx.task.task_id, lease_id: fx.task.lease_id };
}

function uploadForm(fx: Fixture, over: Record<string, string>, fileName = 'frame.png'): Promise<Response> {
  const form = new FormData();
  for (const [k, v] of Object.entries({ ...lease(fx), frame: '1', ...over })) form.set(k, v);
  form.set('file', new File([pngBytes('form')], fileName, { type: 'image/png' }));
  return call('/upload_result', { method: 'POST', body: form });
}

// ---------------------------------------------------------------------------------------------
// Path parameters, for every route: each one in turn replaced by a trick or an unknown value.

/** A value the route would accept for a parameter, so that only the swapped one is bad. */
function validParam(name: string, path: string, fx: Fixture): string {
  const values: Record<string, string> = {
    job_id: fx.job.job_id,
    task_id: fx.task.task_id,
    frame: '1',
    worker_id: fx.worker,
    name: fx.job.blend_file,
    sha256: path.includes(':upload_id') ? fx.uploadSha : fx.blobSha,
    upload_id: fx.uploadId,
    n: '1',
  };
  return values[name] ?? UNKNOWN_ID;
}

/** Well-formed values that name nothing. */
const UNKNOWN_PARAM: Record<string, string> = {
  frame: '999999',
  name: `${'f'.repeat(64)}.blend`,
  sha256: 'f'.repeat(64),
  n: '9999',
};

const PATH_TRICKS = [
  '..',
  '%2e%2e',
  '.%2e',
  '%2e%2e%2f%2e%2e%2fetc%2fpasswd',
  '%2fetc%2fpasswd',
  '..%5c..%5cwindows%5cwin.ini',
  'x%00',
  '%00',
  'not-an-id',
  '-1',
  '1.5',
  '1e3',
  '99999999999999999999',
  'a'.repeat(300),
];

function routeList(): { method: string; path: string }[] {
  const seen = new Set<string>();
  return app.routes
    .filter((r) => r.method !== 'ALL')
    .filter((r) => !seen.has(`${r.method} ${r.path}`) && seen.add(`${r.method} ${r.path}`))
    .map((r) => ({ method: r.method, path: r.path }));
}

function paramCases(method: string, path: string): BadCase[] {
  const names = [...path.matchAll(/:(\w+)/g)].map((m) => m[1]!);
  const spec = ROUTES[`${method} ${path}`];
  const build = (fx: Fixture, swap: string, value: string) =>
    path.replace(/:(\w+)/g, (_, name: string) => (name === swap ? value : encodeURIComponent(validParam(name, path, fx))));
  const send = (swap: string, value: (fx: Fixture) => string) => async (fx: Fixture) =>
    call(build(fx, swap, value(fx)), (await spec?.init?.(fx)) ?? { method });
  const normalizes = (name: string, trick: string) => {
    const built = build(PLACEHOLDER, name, trick);
    return new URL(built, 'http://farm').pathname !== built;
  };
  return names.flatMap((name) => [
    ...(spec?.unknownIsValid?.includes(name)
      ? []
      : [
          bad(
            `an unknown ${name}`,
            send(name, () => UNKNOWN_PARAM[name] ?? UNKNOWN_ID),
          ),
        ]),
    ...PATH_TRICKS.map((trick) => ({
      ...bad(
        `${name} = ${trick.length > 40 ? `${trick.slice(0, 10)}…(${trick.length})` : trick}`,
        send(name, () => trick),
      ),
      elsewhere: normalizes(name, trick),
    })),
  ]);
}

// ---------------------------------------------------------------------------------------------

/** Sends a bad request: a 4xx, exactly `{ "error": string }`, and nothing stored changed. */
async function expectRefusedAndNothingChanged(send: Send, elsewhere = false): Promise<void> {
  const before = await countRows();
  const res = await send();
  const text = await res.text();
  if (elsewhere) {
    expect(res.status, text.slice(0, 300)).toBeLessThan(500);
    expect(await countRows()).toEqual(before);
    return;
  }
  expect(res.status, text.slice(0, 300)).toBeGreaterThanOrEqual(400);
  expect(res.status, text.slice(0, 300)).toBeLessThan(500);
  expect(res.headers.get('content-type') ?? '').toContain('application/json');
  const body = JSON.parse(text) as Record<string, unknown>;
  expect(Object.keys(body)).toEqual(['error']);
  expect(typeof body.error).toBe('string');
  expect((body.error as string).length).toBeGreaterThan(0);
  expect(await countRows()).toEqual(before);
}

describe('the bad-input table', () => {
  it('has an entry for every route of the app, and none for a route that is gone', () => {
    const registered = routeList().map((r) => `${r.method} ${r.path}`);
    expect(
      registered.filter((key) => !(key in ROUTES)),
      'routes without bad-input cases: add them to ROUTES',
    ).toEqual([]);
    expect(
      Object.keys(ROUTES).filter((key) => !registered.includes(key)),
      'ROUTES entries for routes the app no longer has',
    ).toEqual([]);
  });
});

for (const { method, path } of routeList()) {
  const cases = [...(ROUTES[`${method} ${path}`]?.cases ?? []), ...paramCases(method, path)];
  if (cases.length === 0) continue; // no input at all: nothing can be bad (listed in ROUTES with cases: [])
  describe(`${method} ${path}`, () => {
    it.each(cases.map((c) => [c.elsewhere ? `${c.what} (a URL for another path)` : c.what, c] as const))(
      'refuses %s with a 4xx and changes nothing',
      async (_what, c) => {
        await expectRefusedAndNothingChanged(() => c.send(f), c.elsewhere);
      },
    );
  });
}

describe('after all of that', () => {
  it('the fixture still works: the task takes its frames and completes, the job runs on', async () => {
    for (const frame of f.task.frames) {
      await json(await call(`/tasks/${f.task.task_id}/frames/${frame}?ext=png`, await rawInit(f, { bytes: pngBytes(frame) })), 201);
    }
    await json(await postJson('/update_task_status', { ...lease(f), status: 'completed' }), 200);
    const status = await json<{ completed_frames: number; status: string }>(await call(`/job_status/${f.job.job_id}`), 200);
    expect(status).toMatchObject({ completed_frames: 2, status: 'running' });
  });
});
