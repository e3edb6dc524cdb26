/**
 * Render nodes with authentication on: enrolment, the node credential, a node acting only as
 * itself, fencing of leases between nodes, and which blends a node may download.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import type { FrameInfo, RegisterWorkerResponse, UpdateTaskStatusResponse } from '../../protocol/schemas.ts';
import { blendBytes, countRows, expectError, json, pngBytes, sha256, taskRow } from '../edge/helpers.ts';
import {
  claimAs,
  enrol,
  ENROL_TOKEN,
  jsonInit,
  putFrameAs,
  putLogAs,
  send,
  submitAs,
  SUBMIT_TOKEN,
  SUBMIT_TOKEN_OLD,
  uploadResultAs,
  type EnrolledNode,
} from './auth-helpers.ts';

const update = (node: EnrolledNode, workerId: string, task: { task_id: string; lease_id: string }, status: string) =>
  send('/update_task_status', jsonInit({ worker_id: workerId, task_id: task.task_id, lease_id: task.lease_id, status }), node.credential);

describe('a farm with tokens', () => {
  it('a job submitted with a submitter token is rendered by an enrolled node using its own credential, and read back with either configured token', async () => {
    const blend = blendBytes(3000, 'auth');
    const job = await submitAs(SUBMIT_TOKEN_OLD, { start_frame: 1, end_frame: 2, chunk_size: 2 }, blend);
    const node = await enrol('render-1');
    const task = await claimAs(node);
    expect(task.frames).toEqual([1, 2]);

    const download = await send(`/download_blend/${task.blend_file}`, {}, node.credential);
    expect(download.status).toBe(200);
    expect(await sha256(new Uint8Array(await download.arrayBuffer()))).toBe(task.blend_sha256);

    await json(await putFrameAs(node.credential, node.workerId, task, 1, pngBytes(1)), 201);
    await json(await uploadResultAs(node.credential, node.workerId, task, 2, pngBytes(2)), 201);
    await json(await putLogAs(node.credential, node.workerId, task, 'Saved: frame 1\nSaved: frame 2\n'), 201);
    await json<UpdateTaskStatusResponse>(await update(node, node.workerId, task, 'completed'), 200);

    for (const token of [SUBMIT_TOKEN_OLD, SUBMIT_TOKEN]) {
      expect(await json(await send(`/job_status/${job.job_id}`, {}, token), 200)).toMatchObject({ status: 'completed', completed_frames: 2 });
      const frames = await json<{ frames: FrameInfo[] }>(await send(`/jobs/${job.job_id}/frames`, {}, token), 200);
      expect(frames.frames.map((f) => f.frame)).toEqual([1, 2]);
    }
  });
});

describe('enrolment and the node credential', () => {
  it('the master stores only a hash of the credential: no table holds the credential itself', async () => {
    const node = await enrol('hashed');
    const row = await env.DB.prepare(`SELECT * FROM workers WHERE id = ?`).bind(node.workerId).first<Record<string, unknown>>();
    expect(row!.credential_hash).toBe(await sha256(new TextEncoder().encode(node.credential)));
    const dump = JSON.stringify([
      (await env.DB.prepare(`SELECT * FROM workers`).all()).results,
      (await env.DB.prepare(`SELECT * FROM rate_limits`).all()).results,
    ]);
    expect(dump).not.toContain(node.credential.slice('farm_node_'.length));
    expect(dump).not.toContain(ENROL_TOKEN);
  });

  it('a node registering again with its own credential keeps its id and credential and is given no new one', async () => {
    const node = await enrol('restart');
    const again = await json<RegisterWorkerResponse>(
      await send('/register_worker', jsonInit({ name: 'restart-2', worker_id: node.workerId }), node.credential),
      201,
    );
    expect(again).toEqual({ worker_id: node.workerId, name: 'restart-2', lease_ms: 60_000 });
    // The old credential still works.
    expect((await send('/get_job', jsonInit({ worker_id: node.workerId }), node.credential)).status).toBe(204);
    expect((await countRows()).workers).toBe(1);
  });

  it("the enrolment token cannot take over an enrolled node's identity: 409, and that node's credential keeps working", async () => {
    const owner = await enrol('owner');
    await expectError(await send('/register_worker', jsonInit({ name: 'thief', worker_id: owner.workerId }), ENROL_TOKEN), 409, 'is enrolled already');
    expect(await env.DB.prepare(`SELECT name FROM workers WHERE id = ?`).bind(owner.workerId).first('name')).toBe('owner');
    expect((await send('/get_job', jsonInit({ worker_id: owner.workerId }), owner.credential)).status).toBe(204);
  });

  it('a node whose id the master forgot (its database was reset) enrols again under the same id', async () => {
    const id = crypto.randomUUID();
    const back = await json<RegisterWorkerResponse>(await send('/register_worker', jsonInit({ name: 'back', worker_id: id }), ENROL_TOKEN), 201);
    expect(back.worker_id).toBe(id);
    expect(back.node_token).toMatch(/^farm_node_/);
  });

  it('a node credential cannot register as another node: 403', async () => {
    const a = await enrol('a');
    const b = await enrol('b');
    await expectError(await send('/register_worker', jsonInit({ name: 'a', worker_id: a.workerId }), b.credential), 403, `belongs to worker ${b.workerId}`);
  });

  it('a revoked credential (its hash cleared) gets 401 that says to enrol again, and enrolling again works', async () => {
    const node = await enrol('revoked');
    await env.DB.prepare(`UPDATE workers SET credential_hash = NULL WHERE id = ?`).bind(node.workerId).run();
    await expectError(await send('/get_job', jsonInit({ worker_id: node.workerId }), node.credential), 401, 'enrol again');
    const again = await json<RegisterWorkerResponse>(await send('/register_worker', jsonInit({ name: 'revoked', worker_id: node.workerId }), ENROL_TOKEN), 201);
    expect(again.worker_id).toBe(node.workerId);
    expect((await send('/get_job', jsonInit({ worker_id: node.workerId }), again.node_token)).status).toBe(204);
  });
});

describe('a node acts only as itself', () => {
  it("every node endpoint refuses a worker_id that is not the credential's with 403, and nothing changes", async () => {
    await submitAs(SUBMIT_TOKEN, { start_frame: 1, end_frame: 4, chunk_size: 2 });
    const a = await enrol('a');
    const b = await enrol('b');
    const task = await claimAs(a);
    const before = await countRows();
    const rowBefore = await taskRow(task.task_id);

    const attempts: [string, () => Promise<Response>][] = [
      ['get_job', () => send('/get_job', jsonInit({ worker_id: a.workerId }), b.credential)],
      ['update running', () => update(b, a.workerId, task, 'running')],
      ['update completed', () => update(b, a.workerId, task, 'completed')],
      ['update failed', () => update(b, a.workerId, task, 'failed')],
      ['update released', () => update(b, a.workerId, task, 'released')],
      ['upload_result', () => uploadResultAs(b.credential, a.workerId, task, 1, pngBytes('forged'))],
      ['PUT frame', () => putFrameAs(b.credential, a.workerId, task, 1, pngBytes('forged'))],
      ['PUT log', () => putLogAs(b.credential, a.workerId, task, 'forged log')],
    ];
    for (const [what, attempt] of attempts) {
      const res = await attempt();
      expect(res.status, what).toBe(403);
      await expectError(res, 403, `cannot act for worker ${a.workerId}`);
    }
    expect(await countRows()).toEqual(before);
    expect(await taskRow(task.task_id)).toEqual(rowBefore);
  });
});

describe("a node using another node's lease", () => {
  it('gets 409 from every update, upload and release, in its own name, and nothing changes', async () => {
    await submitAs(SUBMIT_TOKEN, { start_frame: 1, end_frame: 4, chunk_size: 2 });
    const a = await enrol('a');
    const b = await enrol('b');
    const taskA = await claimAs(a);
    await claimAs(b); // b holds a lease of its own too
    const before = await countRows();
    const rowBefore = await taskRow(taskA.task_id);

    const attempts: [string, () => Promise<Response>][] = [
      ['update running', () => update(b, b.workerId, taskA, 'running')],
      ['update completed', () => update(b, b.workerId, taskA, 'completed')],
      ['update failed', () => update(b, b.workerId, taskA, 'failed')],
      ['update released', () => update(b, b.workerId, taskA, 'released')],
      ['upload_result', () => uploadResultAs(b.credential, b.workerId, taskA, taskA.frames[0]!, pngBytes('stolen'))],
      ['PUT frame', () => putFrameAs(b.credential, b.workerId, taskA, taskA.frames[0]!, pngBytes('stolen'))],
      ['PUT log', () => putLogAs(b.credential, b.workerId, taskA, 'stolen log')],
    ];
    for (const [what, attempt] of attempts) {
      const res = await attempt();
      expect(res.status, what).toBe(409);
      await expectError(res, 409, 'is not the current lease');
    }
    expect(await countRows()).toEqual(before);
    expect(await taskRow(taskA.task_id)).toEqual(rowBefore);

    // The rightful holder is unaffected.
    await json(await putFrameAs(a.credential, a.workerId, taskA, taskA.frames[0]!, pngBytes('real')), 201);
  });
});

describe('which blends a node may download', () => {
  it('only the blend of a task it holds; a submitter may download any blend', async () => {
    const wanted = await submitAs(SUBMIT_TOKEN, { start_frame: 1, end_frame: 1, priority: 90 }, blendBytes(2000, 'held'));
    const other = await submitAs(SUBMIT_TOKEN, { start_frame: 1, end_frame: 1, priority: 10 }, blendBytes(2000, 'other'));
    const node = await enrol('downloader');
    const idle = await enrol('idle');
    const task = await claimAs(node);
    expect(task.blend_file).toBe(wanted.blend_file);

    expect((await send(`/download_blend/${wanted.blend_file}`, {}, node.credential)).status).toBe(200);
    await expectError(await send(`/download_blend/${other.blend_file}`, {}, node.credential), 403, 'may download only the input of a task it was given');
    await expectError(await send(`/download_blend/${wanted.blend_file}`, {}, idle.credential), 403, 'holds no task');
    expect((await send(`/download_blend/${other.blend_file}`, {}, SUBMIT_TOKEN)).status).toBe(200);

    // Once the task is given back, the node's access to the blend ends with it.
    await json(await update(node, node.workerId, task, 'released'), 200);
    await expectError(await send(`/download_blend/${wanted.blend_file}`, {}, node.credential), 403, 'holds no task');
  });
});

describe('which files of a project manifest a node may download', () => {
  it('only those of a manifest whose job it holds a task of; a submitter may download any', async () => {
    const blend = blendBytes(2000, 'manifest-held');
    const blendSha = await sha256(blend);
    const manifest = { version: 1, main_blend: 'scene.blend', files: [{ path: 'scene.blend', sha256: blendSha, size: blend.length }] };
    const answer = await json<{ manifest_sha256: string }>(await send('/manifests', jsonInit(manifest), SUBMIT_TOKEN), 200);
    const upload = await json<{ upload_id: string }>(await send(`/blobs/${blendSha}/uploads`, jsonInit({ size: blend.length }), SUBMIT_TOKEN), 201);
    const part = { method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': String(blend.length) }, body: blend };
    expect((await send(`/blobs/${blendSha}/uploads/${upload.upload_id}/parts/1`, part, SUBMIT_TOKEN)).status).toBe(200);
    expect((await send(`/blobs/${blendSha}/uploads/${upload.upload_id}/complete`, { method: 'POST' }, SUBMIT_TOKEN)).status).toBe(201);
    const jobBody = { blob_sha256: answer.manifest_sha256, kind: 'manifest', start_frame: 1, end_frame: 1 };
    await json(await send('/jobs', jsonInit(jobBody), SUBMIT_TOKEN), 201);
    const node = await enrol('manifest-downloader');
    const idle = await enrol('manifest-idle');
    const file = `/manifests/${answer.manifest_sha256}/files/${blendSha}`;

    await expectError(await send(file, {}, node.credential), 403, 'holds no task');
    const task = await claimAs(node);
    expect(task.input_kind).toBe('manifest');
    const got = await send(file, {}, node.credential);
    expect(got.status).toBe(200);
    expect(await sha256(new Uint8Array(await got.arrayBuffer()))).toBe(blendSha);
    await expectError(await send(file, {}, idle.credential), 403, 'holds no task');
    expect((await send(file, {}, SUBMIT_TOKEN)).status).toBe(200);
    await expectError(await send(file), 401, /token|credential/i);
  });
});
