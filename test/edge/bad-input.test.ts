/**
 * Every class of bad input gets a 4xx with `{ "error": "..." }` that says what was wrong, and
 * changes nothing: no row in any table and no object in R2 appears or disappears.
 */
import { describe, expect, it } from 'vitest';
import type { SubmitJobResponse, TaskAssignment } from '../../protocol/schemas.ts';
import { FRAME_MIN } from '../../protocol/schemas.ts';
import {
  blendBytes,
  call,
  claim,
  expectError,
  expectRefusedUnchanged,
  json,
  pngBytes,
  postJson,
  putFrame,
  registerWorker,
  sha256,
  submitForm,
  submitJob,
  submitOk,
  update,
  uploadFrame,
  sharedFarm,
} from './helpers.ts';

const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000';
const MAX_UPLOAD_BYTES = 100 * 1024 * 1024;
const MAX_JSON_BYTES = 256 * 1024;

let job: SubmitJobResponse;
let worker: string;
let task: TaskAssignment;

// The refusals change nothing: one farm serves them all.
sharedFarm(async () => {
  job = await submitOk({ start_frame: 1, end_frame: 4, chunk_size: 2 });
  worker = await registerWorker('victim');
  task = await claim(worker);
});

describe('POST /submit_job refuses', () => {
  it('a form without blend_file', async () => {
    await expectRefusedUnchanged(() => submitJob({ start_frame: 1, end_frame: 10 }, null), 400, 'blend_file is required');
  });

  it('blend_file sent as a text field instead of a file', async () => {
    await expectRefusedUnchanged(() => submitJob({ start_frame: 1, end_frame: 10, blend_file: 'scene.blend' }, null), 400, 'must be a file upload');
  });

  it('a form without start_frame', async () => {
    await expectRefusedUnchanged(() => submitJob({ end_frame: 10 }), 400, 'start_frame is required');
  });

  it('an empty start_frame, rather than reading it as frame 0', async () => {
    await expectRefusedUnchanged(() => submitJob({ start_frame: '', end_frame: 10 }), 400, 'start_frame is required');
  });

  it('a fractional frame number ("1.5")', async () => {
    await expectRefusedUnchanged(() => submitJob({ start_frame: '1.5', end_frame: 10 }), 400, 'start_frame must be a whole number');
  });

  it('a frame number that is not a number ("abc"), saying so rather than calling it missing', async () => {
    await expectRefusedUnchanged(() => submitJob({ start_frame: 1, end_frame: 'abc' }), 400, 'end_frame must be a number');
  });

  it(`a frame below FRAME_MIN (${FRAME_MIN}), while FRAME_MIN itself is accepted`, async () => {
    await expectRefusedUnchanged(() => submitJob({ start_frame: FRAME_MIN - 1, end_frame: 0 }), 400, `start_frame must be between ${FRAME_MIN}`);
    const atBound = await submitOk({ start_frame: FRAME_MIN, end_frame: FRAME_MIN + 9 });
    expect(atBound.total_frames).toBe(10);
  });

  it('start_frame after end_frame', async () => {
    await expectRefusedUnchanged(() => submitJob({ start_frame: 10, end_frame: 9 }), 400, 'start_frame must not be after end_frame');
  });

  it('a range of 1,000,001 frames, over MAX_FRAMES_PER_JOB (1,000,000)', async () => {
    await expectRefusedUnchanged(() => submitJob({ start_frame: 0, end_frame: 1_000_000 }), 413, 'the job has 1000001 frames, over the limit of 1000000');
  });

  it('out-of-range optional fields (chunk_size 0, priority 101, max_attempts 0)', async () => {
    await expectRefusedUnchanged(() => submitJob({ start_frame: 1, end_frame: 2, chunk_size: 0 }), 400, 'chunk_size must be a whole number from 1');
    await expectRefusedUnchanged(() => submitJob({ start_frame: 1, end_frame: 2, priority: 101 }), 400, 'priority must be a whole number from 0 to 100');
    await expectRefusedUnchanged(() => submitJob({ start_frame: 1, end_frame: 2, max_attempts: 0 }), 400, 'max_attempts must be a whole number from 1');
  });

  it('an empty file', async () => {
    await expectRefusedUnchanged(() => submitJob({ start_frame: 1, end_frame: 2 }, new Uint8Array(0)), 400, 'blend_file is empty');
  });

  it('a file that is not a .blend (a PNG)', async () => {
    await expectRefusedUnchanged(() => submitJob({ start_frame: 1, end_frame: 2 }, pngBytes('not a blend')), 400, 'is not a .blend file');
  });

  it('a gzip file whose contents are not a .blend', async () => {
    const gz = new Uint8Array(await new Response(new Blob([pngBytes('inside')]).stream().pipeThrough(new CompressionStream('gzip'))).arrayBuffer());
    await expectRefusedUnchanged(() => submitJob({ start_frame: 1, end_frame: 2 }, gz), 400, 'gzip file that does not contain a .blend');
  });

  it('a JSON body instead of multipart/form-data, with 415', async () => {
    await expectRefusedUnchanged(() => postJson('/submit_job', { start_frame: 1, end_frame: 2 }), 415, 'send the body as multipart/form-data');
  });

  it('a truncated multipart body', async () => {
    const request = new Request('http://farm/submit_job', { method: 'POST', body: submitForm({ start_frame: 1, end_frame: 2 }, blendBytes()) });
    const whole = new Uint8Array(await request.arrayBuffer());
    const cut = whole.slice(0, whole.length - 100);
    await expectRefusedUnchanged(
      () => call('/submit_job', { method: 'POST', headers: { 'content-type': request.headers.get('content-type')! }, body: cut }),
      400,
      'not valid multipart/form-data',
    );
  });

  it('a multipart body with a boundary that does not match the content type', async () => {
    const request = new Request('http://farm/submit_job', { method: 'POST', body: submitForm({ start_frame: 1, end_frame: 2 }, blendBytes()) });
    const whole = new Uint8Array(await request.arrayBuffer());
    await expectRefusedUnchanged(
      () => call('/submit_job', { method: 'POST', headers: { 'content-type': 'multipart/form-data; boundary=not-the-boundary' }, body: whole }),
      400,
      'not valid multipart/form-data',
    );
  });

  it('a multipart body streamed without a Content-Length, with 411', async () => {
    const request = new Request('http://farm', { method: 'POST', body: submitForm({ start_frame: 1, end_frame: 2 }, blendBytes()) });
    const bytes = new Uint8Array(await request.arrayBuffer());
    await expectRefusedUnchanged(
      () =>
        call('/submit_job', {
          method: 'POST',
          headers: { 'content-type': request.headers.get('content-type')! },
          // A stream of unknown length goes out chunked, with no Content-Length header.
          body: new ReadableStream({
            start(controller) {
              controller.enqueue(bytes);
              controller.close();
            },
          }),
        }),
      411,
      'needs a Content-Length',
    );
  });

  it('a body declared over MAX_UPLOAD_BYTES (100 MB), with 413 before it is read', async () => {
    const declared = MAX_UPLOAD_BYTES + 1;
    await expectRefusedUnchanged(
      () =>
        call('/submit_job', {
          method: 'POST',
          headers: { 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(declared) },
          // Nothing is ever written: the answer must come from the declared length alone.
          body: new FixedLengthStream(declared).readable,
        }),
      413,
      `over the limit of ${MAX_UPLOAD_BYTES} bytes (MAX_UPLOAD_BYTES)`,
    );
  });
});

describe('GET /download_blend refuses unsafe names', () => {
  const names = [
    '..',
    '%2e%2e',
    '..%2fetc',
    '..%2f..%2f..%2fetc%2fpasswd',
    '%2fetc%2fpasswd',
    'scene%00.blend',
    '..%5c..%5cwindows%5cwin.ini',
    'a%5cb.blend',
    'x.blend',
  ];
  it.each(names)('%s gets 400 or 404 with an error, never a 500 or a file', async (name) => {
    const res = await call(`/download_blend/${name}`);
    const text = await res.text();
    expect(text).not.toContain('BLENDER');
    // "/download_blend/.." is the URL "/" (URLs resolve dot segments before any route sees them).
    if (new URL(`http://farm/download_blend/${name}`).pathname === '/') return expect(res.status).toBeLessThan(500);
    expect([400, 404]).toContain(res.status);
    expect(JSON.parse(text)).toEqual({ error: expect.any(String) });
  });

  it('names that wrap a real blend_file in a path (jobs/..., ../...) are refused too, though the file exists', async () => {
    expect((await call(`/download_blend/${job.blend_file}`)).status).toBe(200);
    for (const name of [`jobs%2f${job.blend_file}`, `%2e%2e%2f${job.blend_file}`, `${job.blend_file}%00`, job.blend_file.toUpperCase()]) {
      await expectError(await call(`/download_blend/${name}`), 400, '64 hex characters');
    }
  });

  it('a well-formed name that was never uploaded gets 404', async () => {
    await expectError(await call(`/download_blend/${'a'.repeat(64)}.blend`), 404, 'no blend file named');
  });
});

describe('unknown ids', () => {
  it.each([
    ['GET', `/job_status/${UNKNOWN_ID}`],
    ['GET', `/jobs/${UNKNOWN_ID}`],
    ['GET', `/jobs/${UNKNOWN_ID}/frames`],
    ['GET', `/jobs/${UNKNOWN_ID}/frames/1`],
    ['GET', `/jobs/${UNKNOWN_ID}/frames.zip`],
    ['GET', `/jobs/${UNKNOWN_ID}/tasks`],
    ['GET', `/jobs/${UNKNOWN_ID}/blocklist`],
    ['POST', `/jobs/${UNKNOWN_ID}/requeue_failed`],
  ])('%s %s: an unknown job gets 404', async (method, path) => {
    await expectRefusedUnchanged(() => call(path, { method }), 404, `no job with id ${UNKNOWN_ID}`);
  });

  it('a job id that is not an id at all gets 400', async () => {
    await expectError(await call('/job_status/not-an-id'), 400, 'job_id is not a valid id');
    await expectError(await call('/jobs/..%2f..%2fetc/frames'), 400, 'job_id is not a valid id');
  });

  it('a frame that was not rendered yet gets 404, and a frame that is not a number gets 400', async () => {
    await expectError(await call(`/jobs/${job.job_id}/frames/4`), 404, 'frame 4 of job');
    await expectError(await call(`/jobs/${job.job_id}/frames/abc`), 400, 'frame must be a whole number');
  });

  it('an unregistered worker asking for work gets 404 telling it to register', async () => {
    await expectRefusedUnchanged(() => postJson('/get_job', { worker_id: UNKNOWN_ID }), 404, 'register with POST /register_worker first');
  });

  it('an update from an unregistered worker gets 404', async () => {
    await expectRefusedUnchanged(() => update(UNKNOWN_ID, task, 'running'), 404, `no worker with id ${UNKNOWN_ID}`);
  });

  it('an update about an unknown task gets 404', async () => {
    await expectRefusedUnchanged(() => update(worker, { task_id: UNKNOWN_ID, lease_id: task.lease_id }, 'completed'), 404, `no task with id ${UNKNOWN_ID}`);
  });

  it('a log for an unknown task gets 404, and a task without a log says so', async () => {
    await expectError(await call(`/jobs/${job.job_id}/tasks/${UNKNOWN_ID}/log`), 404, `no task ${UNKNOWN_ID} in job`);
    await expectError(await call(`/jobs/${job.job_id}/tasks/${task.task_id}/log`), 404, 'has no log yet');
  });

  it('an unknown endpoint gets a JSON 404', async () => {
    await expectError(await call('/nope', { method: 'DELETE' }), 404, 'no such endpoint: DELETE /nope');
  });
});

describe('JSON bodies', () => {
  const post = (body: string, contentType = 'application/json') => call('/get_job', { method: 'POST', headers: { 'content-type': contentType }, body });

  it('invalid JSON gets 400', async () => {
    await expectRefusedUnchanged(() => post('{"worker_id": '), 400, 'the body is not valid JSON');
  });

  it('100,000 unclosed "[" get 400, never a crash', async () => {
    await expectRefusedUnchanged(() => post('['.repeat(100_000)), 400, 'not valid JSON');
  });

  it('100,000 levels of nested arrays get 400 (the body must be an object)', async () => {
    await expectRefusedUnchanged(() => post('['.repeat(100_000) + ']'.repeat(100_000)), 400, 'the JSON body must be an object');
  });

  it('40,000 levels of nested objects get 400 naming the missing field', async () => {
    await expectRefusedUnchanged(() => post(`${'{"a":'.repeat(40_000)}1${'}'.repeat(40_000)}`), 400, 'worker_id is required');
  });

  it('a JSON body sent without Content-Type: application/json gets 415', async () => {
    await expectRefusedUnchanged(() => post(JSON.stringify({ worker_id: worker }), 'text/plain'), 415, 'Content-Type: application/json');
    await expectRefusedUnchanged(() => post(JSON.stringify({ name: 'x' }), 'application/x-www-form-urlencoded'), 415, 'application/json');
  });

  it('a JSON body over MAX_JSON_BYTES (256 KiB) gets 413', async () => {
    const body = JSON.stringify({ name: 'big', hostname: 'x'.repeat(MAX_JSON_BYTES) });
    await expectRefusedUnchanged(
      () => call('/register_worker', { method: 'POST', headers: { 'content-type': 'application/json' }, body }),
      413,
      'over the limit',
    );
  });

  it('a non-object JSON body and a wrong field type get 400', async () => {
    await expectRefusedUnchanged(() => post('null'), 400, 'must be an object');
    await expectRefusedUnchanged(() => postJson('/register_worker', { name: '' }), 400, 'name must not be empty');
    await expectRefusedUnchanged(() => update(worker, task, 'paused' as never), 400, 'status must be one of running, completed, failed, released');
  });
});

describe('frame uploads refuse', () => {
  it("a frame outside the task's range", async () => {
    await expectRefusedUnchanged(() => uploadFrame(worker, task, 3, pngBytes(3)), 400, `frame 3 is not in task ${task.task_id} (frames 1-2)`);
  });

  it('a file type that is not an image type', async () => {
    await expectRefusedUnchanged(() => uploadFrame(worker, task, 1, pngBytes(1), 'frame_1.sh'), 400, 'the frame\'s file type "sh" is not one of png');
    await expectRefusedUnchanged(() => putFrame(worker, task, 1, pngBytes(1), { ext: '..%2fx' }), 400, 'is not one of png');
  });

  it('a raw upload with a malformed x-farm-sha256 or an empty body', async () => {
    await expectRefusedUnchanged(() => putFrame(worker, task, 1, pngBytes(1), { sha256: 'abc' }), 400, 'x-farm-sha256 header must be a hex SHA-256');
    await expectRefusedUnchanged(() => putFrame(worker, task, 1, new Uint8Array(0)), 400, 'the upload is empty');
  });

  it('a raw upload without the lease headers', async () => {
    const bytes = pngBytes(1);
    await expectRefusedUnchanged(
      () =>
        call(`/tasks/${task.task_id}/frames/1?ext=png`, {
          method: 'PUT',
          headers: { 'content-length': String(bytes.length), 'x-farm-worker-id': worker, 'x-farm-sha256': '' },
          body: bytes,
        }),
      400,
      'lease_id is required',
    );
  });

  it('a multipart upload without the file', async () => {
    const form = new FormData();
    for (const [k, v] of Object.entries({ worker_id: worker, task_id: task.task_id, lease_id: task.lease_id, frame: '1' })) form.set(k, v);
    await expectRefusedUnchanged(() => call('/upload_result', { method: 'POST', body: form }), 400, 'file is required');
  });

  it('after all of these, the task is untouched and still completes normally', async () => {
    for (const frame of task.frames) await json(await putFrame(worker, task, frame, pngBytes(frame)), 201);
    await json(await update(worker, task, 'completed'), 200);
    const res = await call(`/jobs/${job.job_id}/frames/1`);
    expect(await sha256(await res.arrayBuffer())).toBe(await sha256(pngBytes(1)));
  });
});

describe('list queries refuse', () => {
  it('a limit out of range and a cursor the API never returned', async () => {
    await expectError(await call('/jobs?limit=0'), 400, 'limit must be a whole number from 1 to 200');
    await expectError(await call('/jobs?cursor=garbage'), 400, 'cursor is not one this API returned');
    await expectError(await call('/jobs?status=sleeping'), 400, 'status must be one of');
  });
});

// Projects stored file by file: manifest paths are checked as project archive entries are.
describe('POST /manifests refuses', () => {
  const file = (path: string) => ({ path, sha256: 'a'.repeat(64), size: 10 });
  const base = { version: 1, main_blend: 'scene.blend' };
  const cases: [string, unknown, number, string | RegExp][] = [
    ['a ".." path', { ...base, files: [file('scene.blend'), file('../etc/passwd')] }, 400, 'goes up with ".."'],
    ['an absolute path', { ...base, files: [file('scene.blend'), file('/etc/passwd')] }, 400, 'is absolute'],
    ['a drive letter', { ...base, files: [file('scene.blend'), file('C:/x.png')] }, 400, 'is absolute'],
    ['a backslash', { ...base, files: [file('scene.blend'), file('tex\\a.png')] }, 400, 'backslash'],
    ['a path twice', { ...base, files: [file('scene.blend'), file('a.png'), file('a.png')] }, 400, '"a.png" appears twice'],
    ['a file where a folder must be', { ...base, files: [file('scene.blend'), file('tex'), file('tex/a.png')] }, 400, 'inside "tex", which is a file'],
    ['a main .blend it does not list', { ...base, files: [file('other.blend')] }, 400, 'is not one of the manifest'],
    ['a main file that is no .blend', { ...base, main_blend: 'a.png', files: [file('a.png')] }, 400, 'must name a .blend'],
    ['no files', { ...base, files: [] }, 400, 'at least one file'],
    ['a bad hash', { ...base, files: [{ path: 'scene.blend', sha256: 'xyz', size: 1 }] }, 400, 'SHA-256'],
    ['a negative size', { ...base, files: [{ path: 'scene.blend', sha256: 'a'.repeat(64), size: -1 }] }, 400, 'negative'],
    ['an unknown field', { ...base, files: [file('scene.blend')], extra: 1 }, 400, /extra|unrecognized/i],
    [
      'an empty file with a hash of content',
      { ...base, files: [file('scene.blend'), { path: 'e', sha256: 'a'.repeat(64), size: 0 }] },
      400,
      'does not go with',
    ],
    ['another version', { ...base, version: 2, files: [file('scene.blend')] }, 400, 'version must be 1'],
  ];
  for (const [what, body, status, phrase] of cases) {
    it(`refuses ${what}`, async () => {
      await expectRefusedUnchanged(() => postJson('/manifests', body), status, phrase);
    });
  }

  it('refuses a manifest over the file and byte limits with 413', async () => {
    const many = Array.from({ length: 50_001 }, (_, i) => ({ path: `f${i}`, sha256: 'a'.repeat(64), size: 1 }));
    await expectRefusedUnchanged(() => postJson('/manifests', { ...base, files: [file('scene.blend'), ...many] }), 413, 'over the limit of 50000');
    const huge = { path: 'big.bin', sha256: 'b'.repeat(64), size: 21 * 1024 ** 3 };
    await expectRefusedUnchanged(() => postJson('/manifests', { ...base, files: [file('scene.blend'), huge] }), 413, /over (this master's|the) limit/);
  });
});
