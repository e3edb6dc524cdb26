/**
 * The node's side of authentication and of not trusting the master: which token goes where,
 * where the credential is kept, enrolling again when it is refused, and the checks on what the
 * master sends before any of it reaches the disk.
 */
import { statSync, readFileSync, existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';
import type { NodeConfig } from '../../worker-node/config.ts';
import { CREDENTIAL_FILE, loadCredential, saveCredential } from '../../worker-node/identity.ts';
import type { Logger } from '../../worker-node/logger.ts';
import { MasterClient } from '../../worker-node/master-client.ts';
import { register } from '../../worker-node/poll-loop.ts';
import { isInsideDir, printable } from '../../worker-node/safe-paths.ts';

interface Seen {
  method: string;
  path: string;
  authorization: string | undefined;
  body: string;
}

/** A stand-in master: answers with `handler` and records every request. */
async function fakeMaster(handler: (req: Seen, res: ServerResponse) => void): Promise<{ url: string; seen: Seen[]; server: Server }> {
  const seen: Seen[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const entry = { method: req.method!, path: req.url!, authorization: req.headers.authorization, body };
      seen.push(entry);
      handler(entry, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  servers.push(server);
  return { url: `http://127.0.0.1:${port}`, seen, server };
}

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

function reply(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(body === undefined ? undefined : JSON.stringify(body));
}

const quiet: Logger = { info: () => {}, warn: () => {}, error: () => {} };
const WORKER = '7c1e2a3b-4d5f-4a6b-8c7d-9e0f1a2b3c4d';
const OTHER = '1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d';

function nodeConfig(master: string): NodeConfig {
  return {
    masterUrl: master,
    name: 'test-node',
    workDir: tempDir('node-auth'),
    threads: 1,
    blender: 'blender',
    blenderVersion: '3.4.1',
    token: 'enrol-me',
    graceMs: 1000,
    pollWaitMs: 0,
  } as NodeConfig;
}

describe('registering with the master', () => {
  it('enrols with the enrolment token, keeps the credential in a 0600 file, and sends only the credential afterwards', async () => {
    const master = await fakeMaster((req, res) => {
      if (req.path === '/register_worker') reply(res, 201, { worker_id: WORKER, name: 'test-node', lease_ms: 60000, node_token: 'farm_node_issued' });
      else reply(res, 204);
    });
    const config = nodeConfig(master.url);
    const client = new MasterClient({ baseUrl: master.url, enrolmentToken: 'enrol-me' });
    expect(await register({ config, client, log: quiet, makeRunner: () => null as never }, new AbortController().signal)).toBe(WORKER);

    const file = join(config.workDir, CREDENTIAL_FILE);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ master: master.url, worker_id: WORKER, node_token: 'farm_node_issued' });
    expect(master.seen[0]!.authorization).toBe('Bearer enrol-me');

    await client.getJob(WORKER, 0);
    expect(master.seen[1]).toMatchObject({ path: '/get_job', authorization: 'Bearer farm_node_issued' });
    await client.close();
  });

  it('a restarted node registers with its saved credential, not the enrolment token, and keeps its id', async () => {
    const master = await fakeMaster((_req, res) => reply(res, 201, { worker_id: WORKER, name: 'test-node', lease_ms: 60000 }));
    const config = nodeConfig(master.url);
    await saveCredential(config.workDir, { master: master.url, worker_id: WORKER, node_token: 'farm_node_saved' });
    const client = new MasterClient({ baseUrl: master.url, enrolmentToken: 'enrol-me' });
    await register({ config, client, log: quiet, makeRunner: () => null as never }, new AbortController().signal);
    expect(master.seen).toHaveLength(1);
    expect(master.seen[0]!.authorization).toBe('Bearer farm_node_saved');
    expect(JSON.parse(master.seen[0]!.body)).toMatchObject({ worker_id: WORKER });
    await client.close();
  });

  it('a refused credential is forgotten and the node enrols again with the enrolment token under the same id', async () => {
    const master = await fakeMaster((req, res) => {
      if (req.authorization === 'Bearer farm_node_revoked') reply(res, 401, { error: 'this node credential is not known to the master' });
      else reply(res, 201, { worker_id: WORKER, name: 'test-node', lease_ms: 60000, node_token: 'farm_node_new' });
    });
    const config = nodeConfig(master.url);
    await saveCredential(config.workDir, { master: master.url, worker_id: WORKER, node_token: 'farm_node_revoked' });
    const client = new MasterClient({ baseUrl: master.url, enrolmentToken: 'enrol-me' });
    await register({ config, client, log: quiet, makeRunner: () => null as never }, new AbortController().signal);
    expect(master.seen.map((s) => s.authorization)).toEqual(['Bearer farm_node_revoked', 'Bearer enrol-me']);
    expect(JSON.parse(master.seen[1]!.body)).toMatchObject({ worker_id: WORKER });
    expect((await loadCredential(config.workDir, master.url))?.node_token).toBe('farm_node_new');
    await client.close();
  });

  it('an id another node holds (409) makes the node enrol as a new node', async () => {
    const master = await fakeMaster((req, res) => {
      if (JSON.parse(req.body).worker_id) reply(res, 409, { error: `worker ${WORKER} is enrolled already` });
      else reply(res, 201, { worker_id: OTHER, name: 'test-node', lease_ms: 60000, node_token: 'farm_node_other' });
    });
    const config = nodeConfig(master.url);
    const { saveWorkerId } = await import('../../worker-node/identity.ts');
    await saveWorkerId(config.workDir, master.url, WORKER);
    const client = new MasterClient({ baseUrl: master.url, enrolmentToken: 'enrol-me' });
    expect(await register({ config, client, log: quiet, makeRunner: () => null as never }, new AbortController().signal)).toBe(OTHER);
    await client.close();
  });

  it('a credential saved for another master is not sent to this one', async () => {
    const master = await fakeMaster((_req, res) => reply(res, 201, { worker_id: WORKER, name: 'n', lease_ms: 60000, node_token: 'farm_node_x' }));
    const config = nodeConfig(master.url);
    await saveCredential(config.workDir, { master: 'https://elsewhere.example', worker_id: OTHER, node_token: 'farm_node_elsewhere' });
    const client = new MasterClient({ baseUrl: master.url, enrolmentToken: 'enrol-me' });
    await register({ config, client, log: quiet, makeRunner: () => null as never }, new AbortController().signal);
    expect(master.seen[0]!.authorization).toBe('Bearer enrol-me');
    expect(master.seen[0]!.body).not.toContain(OTHER);
    await client.close();
  });
});

describe('the master client', () => {
  it('waits out a 429 as long as Retry-After says, then retries', async () => {
    let calls = 0;
    const master = await fakeMaster((_req, res) => {
      calls++;
      if (calls === 1) reply(res, 429, { error: 'too many requests' }, { 'retry-after': '1' });
      else reply(res, 204);
    });
    const client = new MasterClient({ baseUrl: master.url, credential: 'farm_node_c' });
    const started = Date.now();
    expect(await client.getJob(WORKER, 0)).toBeNull();
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(calls).toBe(2);
    await client.close();
  });

  const good = {
    task_id: '0b7d6a8e-3f1c-4c52-9a43-5d2e8f0a1b2c',
    lease_id: '5d2e8f0a-1b2c-4c52-9a43-0b7d6a8e3f1c',
    job_id: '9a430b7d-6a8e-4c52-3f1c-5d2e8f0a1b2c',
    job_name: 'scene',
    frames: [1, 2],
    start_frame: 1,
    end_frame: 2,
    blend_file: `${'ab'.repeat(32)}.blend`,
    blend_sha256: 'ab'.repeat(32),
    blend_size: 100,
    lease_expires_at: new Date().toISOString(),
    lease_ms: 60000,
    attempt: 1,
  };

  it.each([
    ['a task id that is a path', { task_id: '../../../../home/farm/.ssh' }],
    ['an attempt that is text', { attempt: '1/../../x' }],
    ['a blend file in another folder', { blend_file: `../${'ab'.repeat(32)}.blend` }],
    ['a blend hash that is not hex', { blend_sha256: 'zz'.repeat(32) }],
    ['a frame Blender would read as relative', { frames: [-5] }],
    ['a frame that is not whole', { frames: [1.5] }],
  ])('refuses a task with %s before using any of it', async (_what, change) => {
    const master = await fakeMaster((_req, res) => reply(res, 200, { ...good, ...change }));
    const client = new MasterClient({ baseUrl: master.url, credential: 'farm_node_c' });
    await expect(client.getJob(WORKER, 0)).rejects.toThrow(/the master sent a task this node refuses/);
    await client.close();
  });

  it('accepts a well-formed task', async () => {
    const master = await fakeMaster((_req, res) => reply(res, 200, good));
    const client = new MasterClient({ baseUrl: master.url, credential: 'farm_node_c' });
    expect(await client.getJob(WORKER, 0)).toMatchObject({ task_id: good.task_id, frames: [1, 2] });
    await client.close();
  });
});

describe('paths and names from outside', () => {
  it('isInsideDir accepts files in the folder and refuses the folder itself, siblings sharing its prefix, and .. escapes', () => {
    expect(isInsideDir('/w/renders/abc', '/w/renders/abc/frame_000001.png')).toBe(true);
    expect(isInsideDir('/w/renders/abc', '/w/renders/abc')).toBe(false);
    expect(isInsideDir('/w/renders/abc', '/w/renders/abc-evil/frame.png')).toBe(false);
    expect(isInsideDir('/w/renders/abc', '/w/renders/abc/../../../etc/passwd')).toBe(false);
    expect(isInsideDir('/w/renders/abc', '/etc/passwd')).toBe(false);
  });

  it('printable turns control characters into spaces and caps the length, so a job name cannot forge log lines', () => {
    expect(printable('scene\n2026-01-01T00:00:00Z INFO [node] fake\u001b[2J')).toBe('scene 2026-01-01T00:00:00Z INFO [node] fake [2J');
    expect(printable('x'.repeat(500)).length).toBe(120);
  });

  it('the credential file is not world-readable even when an older copy was', async () => {
    const dir = tempDir('cred');
    await saveCredential(dir, { master: 'http://m', worker_id: WORKER, node_token: 'farm_node_1' });
    await saveCredential(dir, { master: 'http://m', worker_id: WORKER, node_token: 'farm_node_2' });
    expect(statSync(join(dir, CREDENTIAL_FILE)).mode & 0o077).toBe(0);
    expect(existsSync(join(dir, `${CREDENTIAL_FILE}.tmp`))).toBe(false);
  });
});
