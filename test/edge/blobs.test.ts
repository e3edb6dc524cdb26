/**
 * Chunked, resumable blob uploads (R2 multipart) and jobs that reference an uploaded blob, inside
 * workerd with the real D1 and R2 bindings.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { MIN_PART_BYTES, type BlobInfo, type SubmitJobResponse, type TaskAssignment, type UploadState } from '../../protocol/schemas.ts';
import { blendBytes, call, claim, expectError, json, postJson, registerWorker, sha256, submitOk } from './helpers.ts';

const PART = MIN_PART_BYTES;

/** `size` bytes that differ per `seed`, so every test has blobs of its own. */
function bytesOf(size: number, seed: number, head?: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i += 4) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x & 0xff;
    bytes[i + 1] = (x >>> 8) & 0xff;
    bytes[i + 2] = (x >>> 16) & 0xff;
    bytes[i + 3] = (x >>> 24) & 0xff;
  }
  if (head) bytes.set(head);
  return bytes;
}

/**
 * A minimal ZIP: one stored entry `name` with `content`, its central directory and end record
 * (CRC left 0: the master reads only names and sizes).
 */
function zipBytes(name: string, content: Uint8Array): Uint8Array {
  const nameBytes = new TextEncoder().encode(name);
  const local = new Uint8Array(30 + nameBytes.length);
  const view = new DataView(local.buffer);
  view.setUint32(0, 0x04034b50, true);
  view.setUint16(4, 20, true);
  view.setUint32(18, content.length, true);
  view.setUint32(22, content.length, true);
  view.setUint16(26, nameBytes.length, true);
  local.set(nameBytes, 30);
  const central = new Uint8Array(46 + nameBytes.length);
  const cv = new DataView(central.buffer);
  cv.setUint32(0, 0x02014b50, true);
  cv.setUint16(4, 20, true);
  cv.setUint16(6, 20, true);
  cv.setUint32(20, content.length, true);
  cv.setUint32(24, content.length, true);
  cv.setUint16(28, nameBytes.length, true);
  central.set(nameBytes, 46);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, 1, true);
  ev.setUint16(10, 1, true);
  ev.setUint32(12, central.length, true);
  ev.setUint32(16, local.length + content.length, true);
  const out = new Uint8Array(local.length + content.length + central.length + end.length);
  out.set(local);
  out.set(content, local.length);
  out.set(central, local.length + content.length);
  out.set(end, local.length + content.length + central.length);
  return out;
}

const startUpload = (sha: string, body: unknown) => postJson(`/blobs/${sha}/uploads`, body);

function putPart(sha: string, uploadId: string, n: number, bytes: Uint8Array): Promise<Response> {
  return call(`/blobs/${sha}/uploads/${uploadId}/parts/${n}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) },
    body: bytes,
  });
}

const complete = (sha: string, uploadId: string) => call(`/blobs/${sha}/uploads/${uploadId}/complete`, { method: 'POST' });

/** Uploads `bytes` whole (every part, then complete) and returns the hash. */
async function uploadBlob(bytes: Uint8Array): Promise<string> {
  const sha = await sha256(bytes);
  const state = await json<UploadState>(await startUpload(sha, { size: bytes.length, part_size: PART }), 201);
  for (let n = 1; n <= state.part_count; n++) {
    const part = bytes.subarray((n - 1) * state.part_size, n * state.part_size);
    await json(await putPart(sha, state.upload_id!, n, part), 200);
  }
  await json<BlobInfo>(await complete(sha, state.upload_id!), 201);
  return sha;
}

async function downloadedHash(path: string): Promise<string> {
  const res = await call(path);
  expect(res.status).toBe(200);
  return sha256(new Uint8Array(await res.arrayBuffer()));
}

async function uploadRows(sha: string): Promise<number> {
  const row = await env.DB.prepare(`SELECT COUNT(*) AS n FROM blob_uploads WHERE sha256 = ?`).bind(sha).first<{ n: number }>();
  return row!.n;
}

// Parts are at least 5 MiB (R2's minimum): slower than most edge tests on a loaded machine.
describe('chunked blob uploads', { timeout: 30_000 }, () => {
  it('a blob sent in two parts is verified, stored once, downloadable, and never asked for again', async () => {
    const bytes = bytesOf(PART + 12_345, 1, blendBytes(64, 'two-parts'));
    const sha = await sha256(bytes);
    expect((await call(`/blobs/${sha}`, { method: 'HEAD' })).status).toBe(404);

    const state = await json<UploadState>(await startUpload(sha, { size: bytes.length, part_size: PART }), 201);
    expect(state).toMatchObject({ sha256: sha, size: bytes.length, part_size: PART, part_count: 2, parts_done: [], blob_exists: false });
    // Parts may arrive in any order.
    expect(await json(await putPart(sha, state.upload_id!, 2, bytes.subarray(PART)), 200)).toEqual({ part_number: 2, size: 12_345 });
    await json(await putPart(sha, state.upload_id!, 1, bytes.subarray(0, PART)), 200);
    expect(await json<BlobInfo>(await complete(sha, state.upload_id!), 201)).toEqual({ sha256: sha, size: bytes.length });

    const head = await call(`/blobs/${sha}`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(bytes.length));
    expect(await downloadedHash(`/blobs/${sha}`)).toBe(sha);
    expect(await uploadRows(sha)).toBe(0);

    // Asking again: nothing to send.
    const again = await json<UploadState>(await startUpload(sha, { size: bytes.length }), 200);
    expect(again).toMatchObject({ blob_exists: true, upload_id: null, parts_done: [] });
    // A lost answer to complete, asked again, is not an error.
    expect(await json<BlobInfo>(await complete(sha, state.upload_id!), 200)).toEqual({ sha256: sha, size: bytes.length });
  });

  it('starting an upload again resumes it: same upload, and the parts already stored are listed', async () => {
    const bytes = bytesOf(2 * PART + 100, 2);
    const sha = await sha256(bytes);
    const first = await json<UploadState>(await startUpload(sha, { size: bytes.length, part_size: PART }), 201);
    await json(await putPart(sha, first.upload_id!, 2, bytes.subarray(PART, 2 * PART)), 200);

    // Another client (or the same after a crash) asks for a different part size: it gets the upload as it is.
    const resumed = await json<UploadState>(await startUpload(sha, { size: bytes.length, part_size: 2 * PART }), 200);
    expect(resumed).toMatchObject({ upload_id: first.upload_id, part_size: PART, part_count: 3, parts_done: [2] });

    await expectError(await complete(sha, first.upload_id!), 409, 'missing 2 part(s) (1, 3)');
    await json(await putPart(sha, first.upload_id!, 1, bytes.subarray(0, PART)), 200);
    await json(await putPart(sha, first.upload_id!, 3, bytes.subarray(2 * PART)), 200);
    await json(await complete(sha, first.upload_id!), 201);
    expect(await downloadedHash(`/blobs/${sha}`)).toBe(sha);
  });

  it('bytes that do not hash to the name are refused at complete, and nothing is kept', async () => {
    const bytes = bytesOf(1000, 3);
    const claimed = await sha256(bytesOf(1000, 4));
    const state = await json<UploadState>(await startUpload(claimed, { size: 1000 }), 201);
    expect(state.part_count).toBe(1);
    await json(await putPart(claimed, state.upload_id!, 1, bytes), 200);
    await expectError(await complete(claimed, state.upload_id!), 400, `have SHA-256 ${await sha256(bytes)}, not ${claimed}`);

    expect((await call(`/blobs/${claimed}`, { method: 'HEAD' })).status).toBe(404);
    expect(await uploadRows(claimed)).toBe(0);
    expect((await env.FILES.list({ prefix: `blobs/${claimed}/` })).objects).toHaveLength(0);
    const blobs = await env.DB.prepare(`SELECT COUNT(*) AS n FROM blobs WHERE sha256 = ?`).bind(claimed).first<{ n: number }>();
    expect(blobs!.n).toBe(0);
  });

  it('an aborted upload is forgotten: its parts are refused and a new start begins from nothing', async () => {
    const bytes = bytesOf(PART + 10, 5);
    const sha = await sha256(bytes);
    const state = await json<UploadState>(await startUpload(sha, { size: bytes.length, part_size: PART }), 201);
    await json(await putPart(sha, state.upload_id!, 1, bytes.subarray(0, PART)), 200);
    expect(await json(await call(`/blobs/${sha}/uploads/${state.upload_id}`, { method: 'DELETE' }), 200)).toEqual({
      upload_id: state.upload_id,
      aborted: true,
    });
    await expectError(await putPart(sha, state.upload_id!, 2, bytes.subarray(PART)), 404, 'start it again');
    const fresh = await json<UploadState>(await startUpload(sha, { size: bytes.length, part_size: PART }), 201);
    expect(fresh.upload_id).not.toBe(state.upload_id);
    expect(fresh.parts_done).toEqual([]);
  });

  it('refuses bad requests with a 4xx that says what was wrong', async () => {
    const bytes = bytesOf(PART + 10, 6);
    const sha = await sha256(bytes);
    await expectError(await startUpload('ABC', { size: 10 }), 400, 'SHA-256 in lowercase hex');
    await expectError(await startUpload(sha, {}), 400, 'size is required');
    await expectError(await startUpload(sha, { size: 0 }), 400, 'at least 1 byte');
    await expectError(await startUpload(sha, { size: 10, part_size: 1024 }), 400, 'at least 5242880 bytes');
    await expectError(await startUpload(sha, { size: 60 * 1024 ** 3 }), 413, 'MAX_BLOB_BYTES');
    const state = await json<UploadState>(await startUpload(sha, { size: bytes.length, part_size: PART }), 201);
    const id = state.upload_id!;
    await expectError(await putPart(sha, id, 1, bytes.subarray(0, 100)), 400, `part 1 must be exactly ${PART} bytes`);
    await expectError(await putPart(sha, id, 3, bytes.subarray(0, 10)), 400, 'from 1 to 2');
    await expectError(await putPart(sha, id, 0, bytes.subarray(0, 10)), 400, 'from 1 to 2');
    await expectError(await putPart(sha, id, 'x' as unknown as number, bytes.subarray(0, 10)), 400, 'part number');
    await expectError(await putPart(sha, crypto.randomUUID(), 1, bytes.subarray(0, PART)), 404, 'no upload');
    await expectError(await putPart(await sha256(bytesOf(5, 7)), id, 1, bytes.subarray(0, PART)), 404, 'no upload');
    const chunked = await call(`/blobs/${sha}/uploads/${id}/parts/2`, {
      method: 'PUT',
      body: new ReadableStream({
        start(controller) {
          controller.enqueue(bytes.subarray(PART));
          controller.close();
        },
      }),
    });
    await expectError(chunked, 411, 'Content-Length');
    expect((await json<UploadState>(await startUpload(sha, { size: bytes.length }), 200)).parts_done).toEqual([]);
  });

  it("a .blend submitted with the seed's multipart form counts as a blob: nothing to upload again", async () => {
    const blend = blendBytes(3000, 'seed-blob');
    const job = await submitOk({ start_frame: 1, end_frame: 1 }, blend);
    const sha = job.blend_file.slice(0, 64);
    expect(await json<UploadState>(await startUpload(sha, { size: blend.length }), 200)).toMatchObject({ blob_exists: true });
    await expectError(await startUpload(sha, { size: blend.length + 1 }), 400, 'the size or the hash is wrong');
    expect(await downloadedHash(`/blobs/${sha}`)).toBe(sha);
  });
});

describe('POST /jobs with an uploaded blob', { timeout: 30_000 }, () => {
  it('a .blend blob becomes a job whose task names it as a plain blend', async () => {
    const sha = await uploadBlob(blendBytes(4000, 'job-blend'));
    const job = await json<SubmitJobResponse>(
      await postJson('/jobs', { blob_sha256: sha, kind: 'blend', start_frame: 1, end_frame: 250, chunk_size: 50, priority: 90, name: 'big shot' }),
      201,
    );
    expect(job).toMatchObject({ status: 'queued', total_frames: 250, blend_file: `${sha}.blend` });
    const status = await json<{ name: string; priority: number; blend_sha256: string }>(await call(`/job_status/${job.job_id}`), 200);
    expect(status).toMatchObject({ name: 'big shot', priority: 90, blend_sha256: sha });
    const task = await claim(await registerWorker('blob-blend-node'));
    expect(task).toMatchObject({ job_id: job.job_id, input_kind: 'blend', main_blend: null, blend_file: `${sha}.blend`, start_frame: 1, end_frame: 50 });
    expect(await downloadedHash(`/download_blend/${task.blend_file}`)).toBe(sha);
  });

  it('a project .zip becomes a job whose task carries the main .blend; the zip downloads by hash', async () => {
    const zip = zipBytes('shots/main.blend', blendBytes(500, 'in-zip'));
    const sha = await uploadBlob(zip);
    const job = await json<SubmitJobResponse>(
      await postJson('/jobs', {
        blob_sha256: sha,
        kind: 'zip',
        main_blend: 'shots/main.blend',
        start_frame: 3,
        end_frame: 4,
        priority: 100,
        warnings: ['missing: //tex/gone.png'],
      }),
      201,
    );
    expect(job.blend_file).toBe(`${sha}.zip`);
    const status = await json<{ name: string; warnings: string[] }>(await call(`/job_status/${job.job_id}`), 200);
    expect(status).toMatchObject({ name: 'main', warnings: ['missing: //tex/gone.png'] });
    const task: TaskAssignment = await claim(await registerWorker('blob-zip-node'));
    expect(task).toMatchObject({ job_id: job.job_id, input_kind: 'zip', main_blend: 'shots/main.blend', blend_sha256: sha, blend_size: zip.length });
    expect(await downloadedHash(`/download_blend/${sha}.zip`)).toBe(sha);
  });

  it('refuses jobs on unknown blobs, wrong kinds and unsafe main_blend paths, creating nothing', async () => {
    const blendSha = await uploadBlob(blendBytes(600, 'refusals'));
    const zipSha = await uploadBlob(zipBytes('a.blend', blendBytes(100, 'z')));
    const before = await env.DB.prepare(`SELECT COUNT(*) AS n FROM jobs`).first<{ n: number }>();
    const base = { start_frame: 1, end_frame: 2 };
    const cases: [unknown, number, string][] = [
      [{ ...base, blob_sha256: 'f'.repeat(64), kind: 'blend' }, 404, 'upload it first'],
      [{ ...base, blob_sha256: blendSha, kind: 'zip' }, 400, 'not a .zip archive'],
      [{ ...base, blob_sha256: zipSha, kind: 'blend' }, 400, 'not a .blend file'],
      [{ ...base, blob_sha256: zipSha, kind: 'tar' }, 400, 'kind must be one of blend, zip'],
      [{ ...base, blob_sha256: zipSha, kind: 'zip', main_blend: '../escape.blend' }, 400, 'main_blend goes up with ".."'],
      [{ ...base, blob_sha256: zipSha, kind: 'zip', main_blend: '/etc/scene.blend' }, 400, 'main_blend is absolute'],
      [{ ...base, blob_sha256: zipSha, kind: 'zip', main_blend: 'C:/scene.blend' }, 400, 'main_blend is absolute'],
      [{ ...base, blob_sha256: zipSha, kind: 'zip', main_blend: 'a\\b.blend' }, 400, 'backslash'],
      [{ ...base, blob_sha256: zipSha, kind: 'zip', main_blend: 'notes.txt' }, 400, 'must name a .blend'],
      [{ ...base, blob_sha256: blendSha, kind: 'blend', main_blend: 'a.blend' }, 400, 'only for kind "zip"'],
      [{ ...base, blob_sha256: blendSha, kind: 'blend', blend_file: 'x' }, 400, 'unknown field(s): blend_file'],
      [{ blob_sha256: blendSha, kind: 'blend', start_frame: 5, end_frame: 1 }, 400, 'start_frame must not be after end_frame'],
      [{ ...base, blob_sha256: 'nothex', kind: 'blend' }, 400, 'blob_sha256 must be a SHA-256'],
    ];
    for (const [body, status, phrase] of cases) await expectError(await postJson('/jobs', body), status, phrase);
    const after = await env.DB.prepare(`SELECT COUNT(*) AS n FROM jobs`).first<{ n: number }>();
    expect(after!.n).toBe(before!.n);
  });
});

describe("the seed's POST /submit_job above the request body limit", () => {
  it('answers 413 naming MAX_UPLOAD_BYTES and `farm submit`, the way to send larger files', async () => {
    const declared = 100 * 1024 * 1024 + 1;
    const error = await expectError(
      await call('/submit_job', {
        method: 'POST',
        headers: { 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(declared) },
        body: new FixedLengthStream(declared).readable,
      }),
      413,
      'over the limit of 104857600 bytes (MAX_UPLOAD_BYTES)',
    );
    expect(error).toContain('farm submit');
  });
});
