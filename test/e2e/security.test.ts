/**
 * The farm with authentication on, as deployed: the real master under `wrangler dev` with
 * FARM_ALLOW_ANONYMOUS=false and tokens passed as variables, real render nodes enrolled with the
 * enrolment token, and real Blender. A .blend whose script is registered to run on load renders
 * on the farm without its script ever running. Every limit answers 413 or 429 when set low.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { USAGE } from '../../worker-node/config.ts';
import { appRoutes, concretePath, plausibleInit, PUBLIC_ROUTES } from '../edge-auth/route-list.ts';
import {
  authHeaders,
  BLENDER,
  makeScene,
  OUTPUT_DIR,
  startMaster,
  startNode,
  submitJob,
  tempDir,
  waitFor,
  waitForJob,
  type Master,
  type RenderNode,
} from './harness.ts';
import { decodePng } from './png.ts';

const SUBMIT_TOKEN = `submit-${randomBytes(16).toString('hex')}`;
const ENROL_TOKEN = `enrol-${randomBytes(16).toString('hex')}`;

async function expectErrorStatus(response: Response, status: number, phrase: string): Promise<string> {
  const text = await response.text();
  expect(response.status, text).toBe(status);
  const body = JSON.parse(text) as { error: string };
  expect(body.error).toContain(phrase);
  return body.error;
}

describe('a master with tokens and nodes enrolled with the enrolment token', () => {
  const dir = tempDir('e2e-security');
  const scene = join(dir, 'anim.blend');
  let master: Master;
  let node: RenderNode;

  beforeAll(async () => {
    makeScene('make_anim_scene.py', [scene, '--frames', '2', '--width', '32', '--height', '24']);
    master = await startMaster({
      name: 'secure',
      vars: {
        FARM_ALLOW_ANONYMOUS: 'false',
        // Two submitter tokens, as in the middle of a rotation.
        FARM_SUBMIT_TOKEN: `previous-token-being-retired,${SUBMIT_TOKEN}`,
        FARM_NODE_TOKEN: ENROL_TOKEN,
        // A node stopped mid long poll can leave a claim behind on the master; a short lease
        // hands such frames to the next node in seconds rather than a minute.
        LEASE_MS: '10000',
      },
    });
    node = startNode({ name: 'secure-1', master: master.url, args: ['--token', ENROL_TOKEN] });
  });

  // Not left running through the next describe.
  afterAll(async () => {
    await node?.stop();
    await master?.stop();
  });

  it('every route but the public ones answers 401 without a token or with a wrong one, over real HTTP', async () => {
    const routes = appRoutes().filter((r) => !PUBLIC_ROUTES.has(r.key));
    expect(routes.length).toBeGreaterThan(10);
    for (const route of routes) {
      for (const token of [undefined, 'wrong-token']) {
        const init = plausibleInit(route.method);
        const response = await fetch(`${master.url}${concretePath(route.path)}`, { ...init, headers: { ...(init.headers as object), ...authHeaders(token) } });
        await expectErrorStatus(response, 401, 'Authorization: Bearer');
      }
    }
    expect((await fetch(`${master.url}/time`)).status).toBe(200);
  });

  it("the seed's curl without a token gets 401; with -H 'Authorization: Bearer' the job renders on a node using its own credential", async () => {
    const curl = (extra: string[]) =>
      spawnSync(
        'curl',
        [
          '-s',
          '-w',
          '\n%{http_code}',
          '-X',
          'POST',
          `${master.url}/submit_job`,
          ...extra,
          '-F',
          `blend_file=@${scene}`,
          '-F',
          'start_frame=1',
          '-F',
          'end_frame=2',
        ],
        { encoding: 'utf8' },
      );
    const refused = curl([]);
    expect(refused.stdout.trim().split('\n').pop()).toBe('401');

    const accepted = curl(['-H', `Authorization: Bearer ${SUBMIT_TOKEN}`]);
    const [body, code] = accepted.stdout.trim().split('\n');
    expect(code).toBe('201');
    const job = JSON.parse(body!) as { job_id: string };

    expect((await fetch(`${master.url}/job_status/${job.job_id}`)).status).toBe(401);
    const status = await waitForJob(master.url, job.job_id, ['completed', 'failed'], 120_000, SUBMIT_TOKEN);
    expect(status).toMatchObject({ status: 'completed', completed_frames: 2 });
    const frame = await fetch(`${master.url}/jobs/${job.job_id}/frames/1`, { headers: authHeaders(SUBMIT_TOKEN) });
    expect(frame.status).toBe(200);
    expect(decodePng(Buffer.from(await frame.arrayBuffer()))).toMatchObject({ width: 32, height: 24 });

    // The node keeps the credential it was given, readable by its user only.
    const credentialFile = join(node.workDir, 'node-credential.json');
    expect(statSync(credentialFile).mode & 0o077).toBe(0);
    const saved = JSON.parse(readFileSync(credentialFile, 'utf8')) as { node_token: string };
    expect(saved.node_token).toMatch(/^farm_node_/);
    // That credential is no submitter token.
    expect((await fetch(`${master.url}/jobs/${job.job_id}`, { headers: authHeaders(saved.node_token) })).status).toBe(403);
  });

  it('a node given a wrong enrolment token does not get in, says why, and keeps running', async () => {
    const log = join(OUTPUT_DIR, 'logs', 'node-wrong-token.log');
    // Logs are appended to across runs: read only what this run writes.
    const from = existsSync(log) ? statSync(log).size : 0;
    const intruder = startNode({ name: 'wrong-token', master: master.url, args: ['--token', 'not-the-enrolment-token'] });
    try {
      const written = () => (existsSync(log) ? readFileSync(log).subarray(from).toString('utf8') : '');
      await waitFor('the node to report the refused enrolment', async () => /enrolment refused: .*401/.test(written()), 60_000, 500);
      expect(intruder.process.exitCode).toBeNull();
      expect(existsSync(join(intruder.workDir, 'node-credential.json'))).toBe(false);
    } finally {
      await intruder.stop();
    }
  });

  it('a .blend with a script registered to run on load renders on the farm, and its script never runs; `blender -y` does run it', async () => {
    // No other node may take these jobs: each renderer mode below gets its own node.
    await node.stop();
    // The node renders in one long-lived Blender per job by default, or one process per task
    // with --no-hot: test each mode this node offers.
    const modes: string[][] = USAGE.includes('--no-hot') ? [[], ['--no-hot']] : [[]];
    for (const mode of modes) {
      const label = mode.join(' ') || 'default';
      const scenes = tempDir('autorun');
      const blend = join(scenes, 'autorun.blend');
      const marker = join(scenes, 'marker', 'autorun-ran.txt');
      makeScene('make_autorun_scene.py', [blend, marker]);
      const renderer = startNode({ name: `autorun-${label.replace(/\W+/g, '')}`, master: master.url, args: ['--token', ENROL_TOKEN, ...mode] });
      try {
        const job = await submitJob(
          master.url,
          new Blob([readFileSync(blend)]),
          { start_frame: 1, end_frame: 1, name: `autorun ${label}` },
          'autorun.blend',
          SUBMIT_TOKEN,
        );
        const status = await waitForJob(master.url, job.job_id, ['completed', 'failed'], 120_000, SUBMIT_TOKEN);
        expect(status, label).toMatchObject({ status: 'completed', completed_frames: 1 });
        const frame = await fetch(`${master.url}/jobs/${job.job_id}/frames/1`, { headers: authHeaders(SUBMIT_TOKEN) });
        expect(frame.status).toBe(200);
        expect(decodePng(Buffer.from(await frame.arrayBuffer()))).toMatchObject({ width: 32, height: 32 });
        expect(existsSync(marker), `${label}: the auto-run script ran on the node`).toBe(false);
      } finally {
        await renderer.stop();
      }

      // The control: the same file with auto-run allowed writes the marker, so its absence above
      // is the farm's doing and not a broken script.
      const allowed = spawnSync(BLENDER, ['-b', '-y', blend], { encoding: 'utf8', timeout: 120_000 });
      expect(allowed.status, allowed.stderr).toBe(0);
      expect(existsSync(marker), 'blender -b -y did not run the script: the test scene is broken').toBe(true);
    }
  });
});

describe('limits of a master started with low values', () => {
  const LIMITED = `limited-${randomBytes(8).toString('hex')}`;
  const RATED = `rated-${randomBytes(8).toString('hex')}`;
  const RATE = 5;
  let master: Master;

  beforeAll(async () => {
    master = await startMaster({
      name: 'limits',
      vars: {
        FARM_ALLOW_ANONYMOUS: 'false',
        FARM_SUBMIT_TOKEN: `${LIMITED},${RATED}`,
        FARM_NODE_TOKEN: ENROL_TOKEN,
        RATE_LIMIT_PER_MINUTE: String(RATE),
        MAX_JSON_BYTES: '400',
        MAX_UPLOAD_BYTES: '1500',
        MAX_FRAMES_PER_JOB: '10',
      },
    });
  });

  const blend = (size: number) => {
    const bytes = new Uint8Array(size);
    bytes.set(new TextEncoder().encode('BLENDER-v304'));
    return new Blob([bytes]);
  };
  const submit = (fields: Record<string, string>, file: Blob, token: string) => {
    const form = new FormData();
    form.set('blend_file', file, 'scene.blend');
    for (const [k, v] of Object.entries(fields)) form.set(k, v);
    return fetch(`${master.url}/submit_job`, { method: 'POST', body: form, headers: authHeaders(token) });
  };

  it('MAX_UPLOAD_BYTES (multipart and raw bodies), MAX_FRAMES_PER_JOB and MAX_JSON_BYTES each answer 413 naming the variable', async () => {
    await expectErrorStatus(await submit({ start_frame: '1', end_frame: '2' }, blend(9000), LIMITED), 413, 'MAX_UPLOAD_BYTES');
    await expectErrorStatus(await submit({ start_frame: '1', end_frame: '11' }, blend(600), LIMITED), 413, 'MAX_FRAMES_PER_JOB');
    const job = (await (await submit({ start_frame: '1', end_frame: '1' }, blend(600), LIMITED)).json()) as { job_id: string };
    expect(job.job_id).toBeTruthy();

    const enrol = await fetch(`${master.url}/register_worker`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...authHeaders(ENROL_TOKEN) },
      body: JSON.stringify({ name: 'n'.repeat(150), hostname: 'h'.repeat(250), blender_version: '3.4.1' }),
    });
    await expectErrorStatus(enrol, 413, 'MAX_JSON_BYTES');

    const node = (await (
      await fetch(`${master.url}/register_worker`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...authHeaders(ENROL_TOKEN) },
        body: JSON.stringify({ name: 'limits-node' }),
      })
    ).json()) as { worker_id: string; node_token: string };
    const task = (await (
      await fetch(`${master.url}/get_job`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...authHeaders(node.node_token) },
        body: JSON.stringify({ worker_id: node.worker_id }),
      })
    ).json()) as { task_id: string; lease_id: string };
    const frame = new Uint8Array(2000);
    const upload = await fetch(`${master.url}/tasks/${task.task_id}/frames/1?ext=png`, {
      method: 'PUT',
      headers: { 'content-type': 'image/png', 'x-farm-worker-id': node.worker_id, 'x-farm-lease-id': task.lease_id, ...authHeaders(node.node_token) },
      body: frame,
    });
    await expectErrorStatus(upload, 413, 'MAX_UPLOAD_BYTES');
  });

  it(`RATE_LIMIT_PER_MINUTE: request ${RATE + 1} of one token within a minute gets 429 with Retry-After; another token is not affected`, async () => {
    for (let i = 0; i < RATE; i++) expect((await fetch(`${master.url}/jobs`, { headers: authHeaders(RATED) })).status).toBe(200);
    const refused = await fetch(`${master.url}/jobs`, { headers: authHeaders(RATED) });
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    await expectErrorStatus(refused, 429, 'RATE_LIMIT_PER_MINUTE');
    expect((await fetch(`${master.url}/jobs`, { headers: authHeaders(LIMITED) })).status).toBe(200);
  });
});
