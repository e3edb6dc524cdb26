/**
 * The `farm` CLI against a real master (wrangler dev) and a real render node with real Blender:
 * submit, watch to completion, download with verified hashes (and resume), logs, nodes, the
 * job's webhook called by the master, and every control command changing what `job_status`
 * reports, with the documented exit codes.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FrameListResponse, TaskListResponse, WebhookPayload, WorkerListResponse } from '../../protocol/api.ts';
import type { JobStatusResponse } from '../../protocol/schemas.ts';
import {
  BLENDER,
  jobStatus,
  makeScene,
  ROOT,
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

const FRAMES = 6;
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

describe('the farm CLI against a running master', () => {
  const dir = tempDir('e2e-cli');
  const scene = join(dir, 'anim.blend');
  let master: Master;
  let node: RenderNode;
  let hookServer: Server;
  let hookUrl: string;
  const hookCalls: { status: number; body: WebhookPayload; event: string | undefined }[] = [];
  /** The hook answers 500 to the first call, so the master must retry. */
  const hookAnswers = [500];

  /** Runs `farm ARGS` against the master (asynchronously: the webhook server lives in this process). */
  const farm = (...args: string[]) =>
    new Promise<Run>((resolve) => {
      execFile(
        process.execPath,
        [join(ROOT, 'cli', 'farm.ts'), ...args],
        {
          env: { ...process.env, FARM_MASTER_URL: master.url, NO_COLOR: '1' },
          timeout: 240_000,
        },
        (error, stdout, stderr) => {
          resolve({ code: error ? Number((error as { code?: unknown }).code ?? 1) : 0, stdout, stderr });
        },
      );
    });
  const farmOk = async (...args: string[]) => {
    const run = await farm(...args);
    expect(run.code, `farm ${args.join(' ')}\n${run.stderr}${run.stdout}`).toBe(0);
    return run;
  };
  const farmJson = async <T>(...args: string[]) => JSON.parse((await farmOk(...args, '--json')).stdout) as T;

  beforeAll(async () => {
    hookServer = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        const status = hookAnswers.shift() ?? 204;
        hookCalls.push({ status, body: JSON.parse(body) as WebhookPayload, event: req.headers['x-farm-event'] as string | undefined });
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', r));
    hookUrl = `http://127.0.0.1:${(hookServer.address() as { port: number }).port}/farm-hook`;
    makeScene('make_anim_scene.py', [scene, '--frames', String(FRAMES), '--width', '64', '--height', '48']);
    master = await startMaster({ name: 'cli' });
    // A job that fails (a truncated .blend, one attempt), for requeue: queued first, it fails
    // while the rest of the test runs.
    corrupt = await submitJob(
      master.url,
      new Blob([readFileSync(scene).subarray(0, 2048)]),
      { start_frame: 1, end_frame: 2, max_attempts: 1, chunk_size: 2 },
      'corrupt.blend',
    );
    node = startNode({ name: 'cli-node', master: master.url });
  });

  afterAll(async () => {
    await node?.stop();
    await master?.stop();
    await new Promise((r) => hookServer?.close(r));
  });

  let jobId: string;
  let corrupt: { job_id: string };

  it('submits in progressive order, watches to completion (exit 0), calls the webhook, downloads frames whose SHA-256 match and that equal a local render, and resumes a download', async () => {
    const submitted = JSON.parse(
      (
        await farmOk(
          'submit',
          scene,
          '--frames',
          `1-${FRAMES}`,
          '--order',
          'progressive',
          '--chunk-size',
          '2',
          '--no-deps',
          '--name',
          'cli e2e',
          '--webhook',
          hookUrl,
          '--json',
          '--no-progress',
        )
      ).stdout,
    ) as { job_id: string; total_frames: number };
    jobId = submitted.job_id;
    // --webhook armed it with the job.
    expect(((await (await fetch(`${master.url}/jobs/${jobId}/webhook`)).json()) as { webhook_url: string }).webhook_url).toBe(hookUrl);
    expect(submitted.total_frames).toBe(FRAMES);
    const hook = await farmOk('webhook', jobId.slice(0, 8), hookUrl);
    expect(hook.stdout).toContain(`${hookUrl}: armed`);

    const watch = await farm('watch', jobId, '--json', '--interval', '0.5');
    expect(watch.code, watch.stderr).toBe(0);
    const updates = watch.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as JobStatusResponse);
    expect(updates.at(-1)).toMatchObject({ status: 'completed', completed_frames: FRAMES, progress: 1, order: 'progressive' });
    // Progressive: the first and last frame in one task, then the middle, then the halves, the
    // node rendering each task's frames though they are not consecutive.
    const { tasks } = (await (await fetch(`${master.url}/jobs/${jobId}/tasks`)).json()) as TaskListResponse;
    expect(tasks.filter((t) => t.kind === 'render').map((t) => [t.start_frame, t.end_frame, t.frame_step])).toEqual([
      [1, 6, 5],
      [2, 4, 2],
      [3, 3, 1],
      [5, 5, 4],
    ]);
    // `farm submit` asks for a preview video of an animation unless told not to.
    expect(updates.at(-1)!.preview_video).toMatchObject({ status: 'completed', url: `/jobs/${jobId}/video` });
    // It saw the job move: progress never goes back.
    const done = updates.map((u) => u.completed_frames);
    expect([...done].sort((a, b) => a - b)).toEqual(done);

    // The master called the webhook after the job completed, retrying the first refusal.
    await waitFor('the webhook to be delivered', async () => hookCalls.some((c) => c.status === 204), 30_000);
    expect(hookCalls.map((c) => c.status)).toEqual([500, 204]);
    expect(hookCalls[1]!.event).toBe('job.completed');
    expect(hookCalls[1]!.body.job).toMatchObject({ job_id: jobId, status: 'completed', completed_frames: FRAMES });
    expect(await farmJson('webhook', jobId)).toMatchObject({ state: 'delivered', attempts: 2 });

    const out = join(dir, 'frames');
    const first = await farmJson<{ downloaded: number; skipped: number; failed: number }>('download', jobId, out);
    expect(first).toMatchObject({ downloaded: FRAMES, skipped: 0, failed: 0 });
    const listing = (await (await fetch(`${master.url}/jobs/${jobId}/frames`)).json()) as FrameListResponse;
    expect(readdirSync(out).sort()).toEqual(listing.frames.map((f) => f.file_name).sort());
    for (const frame of listing.frames) {
      const bytes = readFileSync(join(out, frame.file_name));
      expect(sha256(bytes), frame.file_name).toBe(frame.sha256);
      expect(decodePng(bytes).width).toBe(64);
    }
    // Each frame is its own: equal, pixel for pixel, to Blender rendering the frames in order.
    await promisify(execFile)(BLENDER, [
      '-b',
      '--factory-startup',
      '--disable-autoexec',
      '-noaudio',
      scene,
      '-o',
      join(dir, 'local', 'f_######'),
      '-t',
      '1',
      '-a',
    ]);
    for (const frame of listing.frames) {
      const local = decodePng(readFileSync(join(dir, 'local', `f_${String(frame.frame).padStart(6, '0')}.png`)));
      expect(decodePng(readFileSync(join(out, frame.file_name))).pixelHash, `frame ${frame.frame}`).toBe(local.pixelHash);
    }

    // Resumable: a second run fetches nothing; a damaged file is fetched again.
    writeFileSync(join(out, listing.frames[2]!.file_name), 'damaged');
    const second = await farmJson<{ downloaded: number; skipped: number }>('download', jobId, out);
    expect(second).toMatchObject({ downloaded: 1, skipped: FRAMES - 1 });
    expect(sha256(readFileSync(join(out, listing.frames[2]!.file_name)))).toBe(listing.frames[2]!.sha256);

    const zip = await farmJson<{ entries: number; zip: string }>('download', jobId, join(dir, 'zipped'), '--zip');
    expect(zip.entries).toBe(FRAMES);
  });

  it('reads: status, list, logs of a frame, nodes with their devices and frames rendered', async () => {
    expect((await farmOk('status', jobId)).stdout).toMatch(/status\s+completed/);
    const list = await farmJson<{ jobs: JobStatusResponse[] }>('list');
    expect(list.jobs.map((j) => j.job_id)).toContain(jobId);
    const log = await farmOk('logs', jobId.slice(0, 8), '3');
    expect(log.stdout).toMatch(/Saved: /);
    const nodes = await farmJson<WorkerListResponse>('nodes');
    expect(nodes.workers).toHaveLength(1);
    expect(nodes.workers[0]).toMatchObject({ name: 'cli-node', online: true, frames_rendered: FRAMES, devices: [expect.objectContaining({ type: 'CPU' })] });
  });

  it('every control command changes what job_status reports; refusals have their exit codes', async () => {
    await waitForJob(master.url, corrupt.job_id, ['failed'], 120_000);

    // Nothing renders while the controls are tried: the node is drained.
    expect(await farmJson('drain', 'cli-node')).toMatchObject({ enabled: false });
    const job = await submitJob(master.url, new Blob([readFileSync(scene)]), { start_frame: 1, end_frame: FRAMES, name: 'controlled' });
    const id = job.job_id;

    expect(await farmJson('pause', id)).toMatchObject({ status: 'paused', previous_status: 'queued' });
    expect((await jobStatus(master.url, id)).status).toBe('paused');
    expect(await farmJson('resume', id)).toMatchObject({ status: 'queued' });
    expect((await jobStatus(master.url, id)).status).toBe('queued');
    expect((await farmOk('priority', id, '80')).stdout).toContain('now has priority 80');
    expect((await jobStatus(master.url, id)).priority).toBe(80);
    expect(await farmJson('cancel', id)).toMatchObject({ status: 'canceled' });
    expect((await jobStatus(master.url, id)).status).toBe('canceled');

    expect(await farmJson('requeue', corrupt.job_id)).toMatchObject({ requeued_tasks: 1 });
    expect(await jobStatus(master.url, corrupt.job_id)).toMatchObject({ status: 'running', failed_frames: 0, error: null });
    await farmOk('cancel', corrupt.job_id);

    // Refusals: a finished job cannot be paused (5); an unknown job (4).
    const refused = await farm('pause', jobId);
    expect(refused.code).toBe(5);
    expect(refused.stderr).toContain('is completed, so it cannot be paused');
    const unknown = await farm('status', '0b7d6a8e-3f1c-4c52-9a43-5d2e8f0a1b2c');
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toContain('no job with id');

    expect(await farmJson('delete', id, '--yes')).toMatchObject({ deleted: true });
    expect((await fetch(`${master.url}/job_status/${id}`)).status).toBe(404);

    expect(await farmJson('enable', 'cli-node')).toMatchObject({ enabled: true, state: 'idle' });
  });
});
