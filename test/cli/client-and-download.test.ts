/**
 * The CLI's parts that need no master: the typed client against a small local HTTP server that
 * misbehaves on purpose (retries, refusals, answers of the wrong shape), resumable and verified
 * downloads, exit codes and the ETA estimate.
 */
import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';
import { FarmApiError, FarmClient } from '../../protocol/client.ts';
import type { JobStatusResponse } from '../../protocol/schemas.ts';
import { downloadFrames } from '../../cli/commands/download.ts';
import { EXIT, explain, UsageError } from '../../cli/exit-codes.ts';
import { EtaEstimator, formatDuration, table } from '../../cli/format.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const JOB_ID = '0b7d6a8e-3f1c-4c52-9a43-5d2e8f0a1b2c';
const sha = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');

function jobStatus(over: Partial<JobStatusResponse> = {}): JobStatusResponse {
  return {
    job_id: JOB_ID,
    name: 'shot 10',
    status: 'running',
    priority: 50,
    start_frame: 1,
    end_frame: 3,
    chunk_size: null,
    total_frames: 3,
    completed_frames: 3,
    failed_frames: 0,
    running_frames: 0,
    queued_frames: 0,
    progress: 1,
    blend_file: 'x.blend',
    blend_sha256: 'a'.repeat(64),
    error: null,
    failure_reason: null,
    warnings: [],
    created_at: new Date().toISOString(),
    started_at: null,
    finished_at: null,
    avg_frame_ms: null,
    eta_seconds: null,
    max_attempts: 3,
    max_node_losses: 5,
    device: 'any',
    tags: [],
    tiles: null,
    preview_video: null,
    ...over,
  };
}

/** Frames the fake master serves; `corrupt` frames are sent with other bytes than their hash says. */
const FRAMES = new Map([1, 2, 3].map((f) => [f, Buffer.from(`frame ${f} pixels `.repeat(200 + f))]));
let corrupt = new Set<number>();
let requests: { method: string; url: string; auth?: string }[] = [];
/** Statuses to answer (in turn) before answering normally, per "METHOD path". */
let scripted = new Map<string, number[]>();

function handle(req: IncomingMessage, res: ServerResponse): void {
  requests.push({ method: req.method!, url: req.url!, auth: req.headers.authorization });
  if (req.headers.authorization === 'Bearer wrong') {
    res.writeHead(401, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'this token is not valid' }));
    return;
  }
  const key = `${req.method} ${req.url!.split('?')[0]}`;
  const queue = scripted.get(key);
  const status = queue?.shift();
  if (status !== undefined) {
    res.writeHead(status, { 'content-type': 'application/json', ...(status === 429 ? { 'retry-after': '1' } : {}) });
    res.end(JSON.stringify({ error: `scripted ${status}` }));
    return;
  }
  const json = (body: unknown, code = 200) => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (key === `GET /job_status/${JOB_ID}`) return json(jobStatus());
  if (key === `GET /jobs/${JOB_ID}/frames`) {
    return json({
      job_id: JOB_ID,
      frames: [...FRAMES].map(([frame, bytes]) => ({
        frame,
        size: bytes.length,
        sha256: sha(bytes),
        content_type: 'image/png',
        file_name: `frame_00000${frame}.png`,
        url: `/jobs/${JOB_ID}/frames/${frame}`,
        render_ms: 1000,
        worker_id: null,
        preview_url: null,
      })),
      next_after: null,
    });
  }
  const frame = /^GET \/jobs\/[^/]+\/frames\/(\d+)$/.exec(key);
  if (frame) {
    const bytes = FRAMES.get(Number(frame[1]))!;
    res.writeHead(200, { 'content-type': 'image/png', 'x-farm-sha256': sha(bytes) });
    res.end(corrupt.has(Number(frame[1])) ? Buffer.concat([bytes, Buffer.from('!')]) : bytes);
    return;
  }
  if (key === `POST /jobs/${JOB_ID}/pause`) return json({ ...jobStatus({ status: 'paused' }), previous_status: 'running' });
  if (key === '/bad-shape' || key === `GET /jobs`) return json({ jobs: 'not a list' });
  json({ error: `no such endpoint: ${key}` }, 404);
}

let server: Server;
let base: string;

beforeAll(async () => {
  server = createServer(handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));
beforeEach(() => {
  corrupt = new Set();
  requests = [];
  scripted = new Map();
});

const client = (token?: string) => new FarmClient({ baseUrl: base, token, retryDelayMs: 10 });

describe('FarmClient', () => {
  it('sends the token, and parses the answer with the protocol schema', async () => {
    const job = await client('secret').jobStatus(JOB_ID);
    expect(job.name).toBe('shot 10');
    expect(requests[0]!.auth).toBe('Bearer secret');
  });

  it('retries a read through 503s and a 429, and gives up with the master message after its retries', async () => {
    scripted.set(`GET /job_status/${JOB_ID}`, [503, 503]);
    expect((await client().jobStatus(JOB_ID)).status).toBe('running');
    expect(requests).toHaveLength(3);
    scripted.set(`GET /job_status/${JOB_ID}`, [500, 500, 500, 500, 500]);
    const err = await client()
      .jobStatus(JOB_ID)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FarmApiError);
    expect(err).toMatchObject({ status: 500, message: 'scripted 500' });
  });

  it('does not repeat a change the master may have made (500 on a POST), but does after a 429', async () => {
    scripted.set(`POST /jobs/${JOB_ID}/pause`, [500]);
    await expect(client().pause(JOB_ID)).rejects.toMatchObject({ status: 500 });
    expect(requests).toHaveLength(1);
    scripted.set(`POST /jobs/${JOB_ID}/pause`, [429]);
    expect((await client().pause(JOB_ID)).status).toBe('paused');
  });

  it('an answer that does not match the schema is an error that says so', async () => {
    await expect(client().listJobs()).rejects.toThrow(/does not match this client \(jobs:/);
  });

  it('an unreachable master is status null with a hint, after retrying', async () => {
    const dead = new FarmClient({ baseUrl: 'http://127.0.0.1:1', retries: 1, retryDelayMs: 5 });
    await expect(dead.jobStatus(JOB_ID)).rejects.toMatchObject({ status: null, message: expect.stringContaining('is it running') });
  });
});

describe('downloadFrames', () => {
  it('fetches every frame with its recorded SHA-256, then skips them all when run again', async () => {
    const dir = tempDir('dl');
    const first = await downloadFrames(client(), JOB_ID, dir, 2);
    expect(first).toMatchObject({ downloaded: 3, skipped: 0, failed: 0 });
    for (const [frame, bytes] of FRAMES) expect(sha(readFileSync(join(dir, `frame_00000${frame}.png`)))).toBe(sha(bytes));
    requests = [];
    const again = await downloadFrames(client(), JOB_ID, dir, 2);
    expect(again).toMatchObject({ downloaded: 0, skipped: 3 });
    expect(requests.filter((r) => /\/frames\/\d+$/.test(r.url))).toEqual([]);
  });

  it('replaces a damaged local copy, and never keeps bytes that do not match their hash', async () => {
    const dir = tempDir('dl');
    await downloadFrames(client(), JOB_ID, dir, 1);
    writeFileSync(join(dir, 'frame_000002.png'), 'damaged');
    corrupt = new Set([3]);
    writeFileSync(join(dir, 'frame_000003.png'), 'damaged too');
    const report = await downloadFrames(client(), JOB_ID, dir, 1);
    expect(report.frames.map((f) => f.outcome)).toEqual(['skipped', 'downloaded', 'mismatch']);
    expect(sha(readFileSync(join(dir, 'frame_000002.png')))).toBe(sha(FRAMES.get(2)!));
    expect(readFileSync(join(dir, 'frame_000003.png'), 'utf8')).toBe('damaged too');
    expect(existsSync(join(dir, 'frame_000003.png.part'))).toBe(false);
  });

  it('`farm download` exits 7 when a frame fails verification, 0 when all are good, with --json', () => {
    const dir = tempDir('dl');
    corrupt = new Set([1]);
    // The server runs in this process, so the CLI runs as a child while this one keeps serving.
    const run = () =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolveRun) => {
        import('node:child_process').then(({ execFile }) => {
          execFile(process.execPath, [join(ROOT, 'cli/farm.ts'), '--master', base, 'download', JOB_ID, dir, '--json'], (error, stdout, stderr) => {
            resolveRun({ status: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
          });
        });
      });
    return (async () => {
      const bad = await run();
      expect(bad.status).toBe(EXIT.integrity);
      expect(bad.stderr).toMatch(/did not match their SHA-256.*run the command again/);
      corrupt = new Set();
      const good = await run();
      expect(good.status).toBe(0);
      expect(JSON.parse(good.stdout)).toMatchObject({ downloaded: 1, skipped: 2, failed: 0 });
    })();
  });
});

describe('exit codes and messages', () => {
  it('map each kind of failure to its documented exit status', () => {
    expect(explain(new UsageError('x')).code).toBe(EXIT.usage);
    expect(explain(new FarmApiError(null, 'GET', '/', 'down')).code).toBe(EXIT.unreachable);
    expect(explain(new FarmApiError(503, 'GET', '/', 'x')).code).toBe(EXIT.unreachable);
    expect(explain(new FarmApiError(404, 'GET', '/', 'no job')).code).toBe(EXIT.notFound);
    expect(explain(new FarmApiError(409, 'POST', '/', 'finished')).code).toBe(EXIT.refused);
    const auth = explain(new FarmApiError(401, 'GET', '/', 'needs a credential'));
    expect(auth).toEqual({ code: EXIT.auth, message: 'needs a credential (pass --token TOKEN or set FARM_TOKEN)' });
  });

  it('a bad command line exits 2, --help exits 0', () => {
    const farm = (...args: string[]) => spawnSync(process.execPath, [join(ROOT, 'cli/farm.ts'), ...args], { encoding: 'utf8' });
    expect(farm('priority', JOB_ID, '101').status).toBe(EXIT.usage);
    expect(farm('status').status).toBe(EXIT.usage);
    expect(farm('--help').status).toBe(0);
    const notAnId = farm('--master', 'http://127.0.0.1:1', 'status', 'zz!');
    expect(notAnId.status).toBe(EXIT.usage);
    expect(notAnId.stderr).toContain('is not a job id (see farm list)');
    // Deleting cannot be undone: without a terminal to ask on, --yes is required.
    const unasked = farm('--master', 'http://127.0.0.1:1', 'delete', JOB_ID);
    expect(unasked.status).toBe(EXIT.usage);
    expect(unasked.stderr).toContain('pass --yes');
  });

  it('a refused token exits 6 from every command, `submit` included', async () => {
    const blend = join(tempDir('auth'), 'scene.blend');
    writeFileSync(blend, 'BLENDER-v300 not really');
    // The server runs in this process, so the CLI runs as a child while this one keeps serving.
    const farm = (...args: string[]) =>
      new Promise<{ status: number; stderr: string }>((resolveRun) => {
        execFile(process.execPath, [join(ROOT, 'cli/farm.ts'), '--master', base, '--token', 'wrong', ...args], (error, _stdout, stderr) => {
          resolveRun({ status: error ? Number((error as { code?: number }).code ?? 1) : 0, stderr });
        });
      });
    for (const args of [
      ['status', JOB_ID],
      ['submit', blend, '--no-deps', '--frames', '1', '--no-progress'],
    ]) {
      const run = await farm(...args);
      expect(run.status, run.stderr).toBe(EXIT.auth);
      expect(run.stderr).toMatch(new RegExp(`^farm ${args[0]}: .*\\(pass --token TOKEN or set FARM_TOKEN\\)$`, 'm'));
    }
  });

  it('says which failures may pass when tried again', () => {
    expect(new FarmApiError(null, 'GET', '/', 'down').retryable).toBe(true);
    expect(new FarmApiError(503, 'GET', '/', 'x').retryable).toBe(true);
    expect(new FarmApiError(429, 'POST', '/', 'x').retryable).toBe(true);
    expect(new FarmApiError(409, 'POST', '/', 'x').retryable).toBe(false);
    expect(new FarmApiError(401, 'GET', '/', 'x').retryable).toBe(false);
  });
});

describe('format', () => {
  it('durations and tables read well', () => {
    expect(formatDuration(5)).toBe('5 s');
    expect(formatDuration(65)).toBe('1 min 5 s');
    expect(formatDuration(3725)).toBe('1 h 2 min');
    expect(formatDuration(null)).toBe('–');
    expect(table(['A', 'BB'], [['xyz', '1']])).toBe('A    BB\nxyz  1');
  });

  it("the ETA is the master's (measured frame times) when it has one, else the rate frames were seen completing", () => {
    const eta = new EtaEstimator();
    const t0 = 1_000_000;
    expect(eta.add(jobStatus({ total_frames: 100, completed_frames: 10, eta_seconds: null }), t0)).toBeNull();
    // 10 more frames in 20 s: 0.5 frame/s, 80 left -> 160 s.
    expect(eta.add(jobStatus({ total_frames: 100, completed_frames: 20, eta_seconds: null }), t0 + 20_000)).toBe(160);
    expect(eta.add(jobStatus({ total_frames: 100, completed_frames: 21, eta_seconds: 42 }), t0 + 22_000)).toBe(42);
    expect(eta.add(jobStatus({ status: 'paused' }), t0 + 23_000)).toBeNull();
    expect(eta.add(jobStatus({ status: 'completed' }), t0 + 24_000)).toBe(0);
  });
});
