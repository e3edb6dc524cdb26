/**
 * A master without tokens refuses to run open; the per-credential rate limit; and every size
 * limit, each set through its variable and answered with a 413 that names it.
 */
import { env } from 'cloudflare:workers';
import { zipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import type { UploadState } from '../../protocol/schemas.ts';
import { blendBytes, countRows, expectError, json, pngBytes, sha256, submitForm } from '../edge/helpers.ts';
import { claimAs, enrol, ENROL_TOKEN, jsonInit, send, sendWith, SUBMIT_TOKEN } from './auth-helpers.ts';

describe('a deployed master without tokens', () => {
  const none = { FARM_ALLOW_ANONYMOUS: 'false', FARM_SUBMIT_TOKEN: undefined, FARM_NODE_TOKEN: undefined };

  it.each([
    ['GET', '/time'],
    ['GET', '/jobs'],
    ['POST', '/register_worker'],
    ['POST', '/get_job'],
  ])('refuses %s %s with 503 that names the secrets to set', async (method, path) => {
    const message = await expectError(await sendWith(none, path, { method }), 503, 'no tokens configured');
    expect(message).toContain('FARM_SUBMIT_TOKEN');
    expect(message).toContain('FARM_NODE_TOKEN');
    expect(message).toContain('wrangler secret put');
  });

  it('refuses to run open when FARM_ALLOW_ANONYMOUS is anything but "true"', async () => {
    for (const value of ['1', 'yes', 'TRUE ', '']) {
      await expectError(await sendWith({ ...none, FARM_ALLOW_ANONYMOUS: value }, '/jobs'), 503, 'no tokens configured');
    }
  });

  it('with only the enrolment token set, submitter endpoints answer 503 naming FARM_SUBMIT_TOKEN, and nodes still enrol', async () => {
    const onlyNodes = { FARM_SUBMIT_TOKEN: undefined };
    await expectError(await sendWith(onlyNodes, '/jobs', {}, SUBMIT_TOKEN), 503, 'FARM_SUBMIT_TOKEN is not set');
    expect((await sendWith(onlyNodes, '/register_worker', jsonInit({ name: 'n' }), ENROL_TOKEN)).status).toBe(201);
  });

  it('with only submitter tokens set, a new node cannot enrol (503 naming FARM_NODE_TOKEN), but an enrolled node can register again', async () => {
    const node = await enrol('enrolled');
    const onlySubmit = { FARM_NODE_TOKEN: undefined };
    await expectError(await sendWith(onlySubmit, '/register_worker', jsonInit({ name: 'new' })), 503, 'FARM_NODE_TOKEN is not set');
    expect((await sendWith(onlySubmit, '/register_worker', jsonInit({ name: 'enrolled' }), node.credential)).status).toBe(201);
    expect((await sendWith(onlySubmit, '/jobs', {}, SUBMIT_TOKEN)).status).toBe(200);
  });
});

describe('the rate limit per credential', () => {
  const three = { RATE_LIMIT_PER_MINUTE: '3' };

  it('answers 429 with Retry-After once a token made RATE_LIMIT_PER_MINUTE requests, and counts each token apart', async () => {
    // Tokens no other test used: an isolate keeps its own count of each token's window.
    const vars = { ...three, FARM_SUBMIT_TOKEN: 'rate-token-a, rate-token-b' };
    for (let i = 0; i < 3; i++) expect((await sendWith(vars, '/jobs', {}, 'rate-token-a')).status).toBe(200);
    const refused = await sendWith(vars, '/jobs', {}, 'rate-token-a');
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    const message = await expectError(refused, 429, 'the limit is 3 per minute (RATE_LIMIT_PER_MINUTE)');
    expect(message).toContain(`try again in ${retryAfter} s`);

    // The other submitter token, and a node, have limits of their own.
    expect((await sendWith(vars, '/jobs', {}, 'rate-token-b')).status).toBe(200);
    expect((await sendWith(three, '/register_worker', jsonInit({ name: 'n' }), ENROL_TOKEN)).status).toBe(201);
  });

  it('a window that has passed lets the token in again', async () => {
    for (let i = 0; i < 3; i++) await sendWith(three, '/jobs', {}, SUBMIT_TOKEN);
    expect((await sendWith(three, '/jobs', {}, SUBMIT_TOKEN)).status).toBe(429);
    // What a minute of waiting leaves behind: the window opened more than 60 s ago.
    await env.DB.prepare(`UPDATE rate_limits SET window_start = window_start - 61000`).run();
    expect((await sendWith(three, '/jobs', {}, SUBMIT_TOKEN)).status).toBe(200);
  });

  it('limits a node by its credential: a busy node gets 429, another node does not, and a 429 changes nothing', async () => {
    await json(
      await send('/submit_job', { method: 'POST', body: submitForm({ start_frame: 1, end_frame: 10, chunk_size: 1 }, blendBytes()) }, SUBMIT_TOKEN),
      201,
    );
    const busy = await enrol('busy');
    const calm = await enrol('calm');
    const poll = (node: typeof busy) => sendWith(three, '/get_job', jsonInit({ worker_id: node.workerId }), node.credential);
    for (let i = 0; i < 3; i++) expect((await poll(busy)).status).toBe(200);
    const before = await countRows();
    await expectError(await poll(busy), 429, 'RATE_LIMIT_PER_MINUTE');
    expect(await countRows()).toEqual(before);
    expect((await poll(calm)).status).toBe(200);
  });

  it('counts nothing for a credential that is not valid, so made-up tokens add no rows', async () => {
    for (let i = 0; i < 5; i++) {
      await sendWith(three, '/jobs', {}, `farm_node_made-up-${i}`);
      await sendWith(three, '/jobs', {}, `wrong-${i}`);
    }
    expect(await env.DB.prepare(`SELECT COUNT(*) AS n FROM rate_limits`).first('n')).toBe(0);
  });

  it('an isolate counts in memory and writes the row once per share of the limit, yet refuses exactly the request past it', async () => {
    const limit = { RATE_LIMIT_PER_MINUTE: '64' }; // shares of 64 / 16 = 4 requests
    const node = await enrol('polling');
    const poll = () => sendWith(limit, '/get_job', jsonInit({ worker_id: node.workerId }), node.credential);
    const row = () => env.DB.prepare(`SELECT count FROM rate_limits WHERE key = ?`).bind(`n:${node.workerId}`).first<number>('count');
    // Three polls, as an idle node makes in a minute: nothing written.
    for (let i = 0; i < 3; i++) expect((await poll()).status).toBe(204);
    expect(await row()).toBeNull();
    expect((await poll()).status).toBe(204);
    expect(await row()).toBe(4);
    for (let i = 4; i < 64; i++) expect((await poll()).status).toBe(204);
    expect(await row()).toBe(64);
    await expectError(await poll(), 429, 'the limit is 64 per minute');
  });

  it('RATE_LIMIT_PER_MINUTE=0 turns the limit off', async () => {
    for (let i = 0; i < 8; i++) expect((await sendWith({ RATE_LIMIT_PER_MINUTE: '0' }, '/jobs', {}, SUBMIT_TOKEN)).status).toBe(200);
  });
});

describe('size limits, each set by its variable', () => {
  it('MAX_JSON_BYTES: a larger JSON body gets 413 naming it, declared or streamed without a Content-Length', async () => {
    const vars = { MAX_JSON_BYTES: '200' };
    const body = JSON.stringify({ name: 'x'.repeat(300) });
    await expectError(
      await sendWith(vars, '/register_worker', { method: 'POST', headers: { 'content-type': 'application/json' }, body }, ENROL_TOKEN),
      413,
      'over the limit of 200 bytes (MAX_JSON_BYTES)',
    );
    const streamed = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(body));
        controller.close();
      },
    });
    await expectError(
      await sendWith(vars, '/register_worker', { method: 'POST', headers: { 'content-type': 'application/json' }, body: streamed }, ENROL_TOKEN),
      413,
      'over the limit of 200 bytes (MAX_JSON_BYTES)',
    );
    expect((await countRows()).workers).toBe(0);
  });

  it('MAX_UPLOAD_BYTES: a larger multipart submission gets 413 naming it, and stores nothing', async () => {
    const before = await countRows();
    await expectError(
      await sendWith(
        { MAX_UPLOAD_BYTES: '3000' },
        '/submit_job',
        { method: 'POST', body: submitForm({ start_frame: 1, end_frame: 2 }, blendBytes(4000)) },
        SUBMIT_TOKEN,
      ),
      413,
      'over the limit of 3000 bytes (MAX_UPLOAD_BYTES)',
    );
    expect(await countRows()).toEqual(before);
  });

  it('MAX_FRAMES_PER_JOB: a longer frame range gets 413 naming it', async () => {
    await expectError(
      await sendWith(
        { MAX_FRAMES_PER_JOB: '10' },
        '/submit_job',
        { method: 'POST', body: submitForm({ start_frame: 1, end_frame: 11 }, blendBytes()) },
        SUBMIT_TOKEN,
      ),
      413,
      'the job has 11 frames, over the limit of 10 per job (MAX_FRAMES_PER_JOB)',
    );
    expect((await countRows()).jobs).toBe(0);
  });

  it('MAX_UPLOAD_BYTES: a larger streamed frame gets 413 naming it, and the frame is not recorded', async () => {
    await json(await send('/submit_job', { method: 'POST', body: submitForm({ start_frame: 1, end_frame: 1 }, blendBytes()) }, SUBMIT_TOKEN), 201);
    const node = await enrol('uploader');
    const task = await claimAs(node);
    const bytes = pngBytes(1, 500);
    const before = await countRows();
    const res = await sendWith(
      { MAX_UPLOAD_BYTES: '400' },
      `/tasks/${task.task_id}/frames/1?ext=png`,
      {
        method: 'PUT',
        headers: {
          'content-type': 'image/png',
          'content-length': String(bytes.length),
          'x-farm-worker-id': node.workerId,
          'x-farm-lease-id': task.lease_id,
          'x-farm-sha256': await sha256(bytes),
        },
        body: bytes,
      },
      node.credential,
    );
    await expectError(res, 413, 'over the limit of 400 bytes (MAX_UPLOAD_BYTES)');
    expect(await countRows()).toEqual(before);
  });
});

describe('project archive limits, checked at POST /jobs from the central directory', () => {
  /** Uploads `bytes` as a blob (one part) with the submitter token and returns its hash. */
  async function uploadBlob(bytes: Uint8Array): Promise<string> {
    const sha = await sha256(bytes);
    const state = await json<UploadState>(await send(`/blobs/${sha}/uploads`, jsonInit({ size: bytes.length }), SUBMIT_TOKEN), 201);
    const part = await send(
      `/blobs/${sha}/uploads/${state.upload_id}/parts/1`,
      { method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) }, body: bytes },
      SUBMIT_TOKEN,
    );
    await json(part, 200);
    await json(await send(`/blobs/${sha}/uploads/${state.upload_id}/complete`, { method: 'POST' }, SUBMIT_TOKEN), 201);
    return sha;
  }

  const createJob = (vars: Record<string, string>, sha: string) =>
    sendWith(vars, '/jobs', jsonInit({ blob_sha256: sha, kind: 'zip', main_blend: 'scene.blend', start_frame: 1, end_frame: 1 }), SUBMIT_TOKEN);

  it('MAX_ARCHIVE_FILES: an archive with more entries gets 413 naming it, and no job', async () => {
    const sha = await uploadBlob(zipSync({ 'scene.blend': blendBytes(200), 'tex/a.png': pngBytes('a'), 'tex/b.png': pngBytes('b') }));
    await expectError(await createJob({ MAX_ARCHIVE_FILES: '2' }, sha), 413, 'the archive has 3 entries, over the limit of 2 (MAX_ARCHIVE_FILES)');
    expect((await countRows()).jobs).toBe(0);
    expect((await createJob({ MAX_ARCHIVE_FILES: '3' }, sha)).status).toBe(201);
  });

  it('MAX_ARCHIVE_BYTES: a zip bomb (a few KiB that unpack to 8 MiB) gets 413 naming it', async () => {
    const bomb = zipSync({ 'scene.blend': blendBytes(200), 'cache/zeros.bin': new Uint8Array(8 * 1024 * 1024) }, { level: 9 });
    expect(bomb.length).toBeLessThan(64 * 1024);
    const sha = await uploadBlob(bomb);
    await expectError(
      await createJob({ MAX_ARCHIVE_BYTES: String(4 * 1024 * 1024) }, sha),
      413,
      'unpacks to more than 4194304 bytes, the limit (MAX_ARCHIVE_BYTES)',
    );
    expect((await countRows()).jobs).toBe(0);
    expect((await createJob({}, sha)).status).toBe(201);
  });

  it('a blob that starts like a ZIP but has no central directory is refused with 400', async () => {
    const truncated = zipSync({ 'scene.blend': blendBytes(2000) }, { level: 0 }).subarray(0, 1000);
    const sha = await uploadBlob(truncated);
    await expectError(await createJob({}, sha), 400, 'no end of central directory record');
  });
});
