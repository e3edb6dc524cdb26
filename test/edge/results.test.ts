/** Frames coming back: uploads (multipart and raw), integrity, completion, failures and retries. */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import type { JobStatusResponse, UpdateTaskStatusResponse, UploadResultResponse } from '../../protocol/schemas.ts';
import {
  call,
  claim,
  countRows,
  expectError,
  getJob,
  json,
  jobRow,
  pngBytes,
  postJson,
  putFrame,
  registerWorker,
  renderAll,
  sha256,
  submitOk,
  taskRow,
  update,
  uploadFrame,
} from './helpers.ts';

/** SHA-256 of the R2 object that the frames row of `frame` names, or null when there is none. */
async function storedSha(jobId: string, frame: number): Promise<string | null> {
  const key = await env.DB.prepare(`SELECT r2_key FROM frames WHERE job_id = ? AND frame = ?`).bind(jobId, frame).first<string>('r2_key');
  const object = key ? await env.FILES.get(key) : null;
  return object ? sha256(await object.arrayBuffer()) : null;
}

describe('uploading frames', () => {
  it("curl's order, the file before the fields, on POST /upload_result: the frame is stored under its lease and nothing else is kept", async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1 });
    const worker = await registerWorker();
    const task = await claim(worker);
    const png = pngBytes(1, 6 * 1024 * 1024);
    const form = (leaseId: string) => {
      const body = new FormData();
      body.set('file', new File([png], 'frame_1.png', { type: 'image/png' }));
      body.set('worker_id', worker);
      body.set('task_id', task.task_id);
      body.set('lease_id', leaseId);
      body.set('frame', '1');
      return body;
    };
    const objectsBefore = (await env.FILES.list()).objects.length;
    // A wrong lease, read after the 6 MiB file: refused, and the file held for it is gone.
    await expectError(await call('/upload_result', { method: 'POST', body: form(crypto.randomUUID()) }), 409, 'lease');
    expect((await env.FILES.list()).objects.length).toBe(objectsBefore);

    const body = await json<UploadResultResponse>(await call('/upload_result', { method: 'POST', body: form(task.lease_id) }), 201);
    expect(body).toMatchObject({ job_id: job.job_id, frame: 1, size: png.length, sha256: await sha256(png) });
    expect(await storedSha(job.job_id, 1)).toBe(await sha256(png));
    // The frame and the .blend: the object held while the fields were read is deleted.
    expect((await env.FILES.list()).objects.map((o) => o.key).filter((k) => !k.startsWith('renders/'))).toHaveLength(objectsBefore);
  });

  it("a frame sent with the seed's multipart POST /upload_result is stored byte for byte and recorded with its hash", async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2 });
    const worker = await registerWorker();
    const task = await claim(worker);
    const png = pngBytes(1, 5000);

    const body = await json<UploadResultResponse>(await uploadFrame(worker, task, 1, png), 201);

    const digest = await sha256(png);
    expect(body).toMatchObject({
      job_id: job.job_id,
      frame: 1,
      size: 5000,
      sha256: digest,
      content_type: 'image/png',
      file_name: 'frame_000001.png',
      url: `/jobs/${job.job_id}/frames/1`,
      render_ms: 1500,
      worker_id: worker,
      completed_frames: 1,
    });
    expect(await storedSha(job.job_id, 1)).toBe(digest);
    expect(await env.DB.prepare(`SELECT task_id, sha256, size FROM frames WHERE job_id = ? AND frame = 1`).bind(job.job_id).first()).toEqual({
      task_id: task.task_id,
      sha256: digest,
      size: 5000,
    });
  });

  it('a frame streamed with PUT /tasks/{id}/frames/{frame}?ext=png and a matching x-farm-sha256 is stored byte for byte', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2 });
    const worker = await registerWorker();
    const task = await claim(worker);
    const png = pngBytes(2, 70_000);

    const body = await json<UploadResultResponse>(await putFrame(worker, task, 2, png), 201);

    expect(body).toMatchObject({ frame: 2, size: 70_000, sha256: await sha256(png), completed_frames: 1, file_name: 'frame_000002.png' });
    expect(await storedSha(job.job_id, 2)).toBe(await sha256(png));
  });

  it('a raw upload whose bytes do not match its x-farm-sha256 is refused 400 and records no frame', async () => {
    await submitOk({ start_frame: 1, end_frame: 1 });
    const worker = await registerWorker();
    const task = await claim(worker);
    const counts = await countRows();

    const res = await putFrame(worker, task, 1, pngBytes(1), { sha256: await sha256(pngBytes('something else')) });

    await expectError(res, 400, 'do not match the SHA-256');
    expect(await countRows()).toEqual(counts);
    expect(await jobRow(task.job_id)).toMatchObject({ completed_frames: 0 });
  });

  it('a corrupted re-upload of a frame that was already stored leaves the good copy and its row in place', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1 });
    const worker = await registerWorker();
    const task = await claim(worker);
    const good = pngBytes('good');
    await json(await putFrame(worker, task, 1, good), 201);

    await expectError(await putFrame(worker, task, 1, pngBytes('bad'), { sha256: '0'.repeat(64) }), 400, 'do not match the SHA-256');

    expect(await storedSha(job.job_id, 1)).toBe(await sha256(good));
    expect(await env.DB.prepare(`SELECT sha256 FROM frames WHERE job_id = ?`).bind(job.job_id).first('sha256')).toBe(await sha256(good));
  });

  it('uploading the same frame twice leaves one frame row, counts it once, and serves the newer bytes', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2 });
    const worker = await registerWorker();
    const task = await claim(worker);
    await json(await uploadFrame(worker, task, 1, pngBytes('first')), 201);

    const again = await json<UploadResultResponse>(await putFrame(worker, task, 1, pngBytes('second', 400)), 201);

    expect(again.completed_frames).toBe(1);
    expect(await env.DB.prepare(`SELECT COUNT(*) AS n FROM frames WHERE job_id = ?`).bind(job.job_id).first('n')).toBe(1);
    expect(await jobRow(job.job_id)).toMatchObject({ completed_frames: 1 });
    expect(await env.DB.prepare(`SELECT frames_rendered FROM workers WHERE id = ?`).bind(worker).first('frames_rendered')).toBe(1);
    expect(await storedSha(job.job_id, 1)).toBe(await sha256(pngBytes('second', 400)));
    expect((await countRows()).r2_objects).toBe(2); // the .blend and one frame
  });
});

describe('completing tasks', () => {
  it('a completed report with a frame not uploaded is refused 409 naming the frame, and the task stays running', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 3, chunk_size: 3 });
    const worker = await registerWorker();
    const task = await claim(worker);
    await json(await uploadFrame(worker, task, 1, pngBytes(1)), 201);
    await json(await uploadFrame(worker, task, 3, pngBytes(3)), 201);

    await expectError(await update(worker, task, 'completed'), 409, 'frame(s) 2 of task');

    expect(await taskRow(task.task_id)).toMatchObject({ status: 'running', lease_id: task.lease_id });
    expect(await jobRow(job.job_id)).toMatchObject({ status: 'running', completed_frames: 2, finished_at: null });
    // Uploading the missing frame makes the same report succeed.
    await json(await uploadFrame(worker, task, 2, pngBytes(2)), 201);
    await json(await update(worker, task, 'completed'), 200);
    expect(await taskRow(task.task_id)).toMatchObject({ status: 'completed' });
  });

  it('the job is completed once the last task with all its frames is reported completed, and not before', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 4, chunk_size: 2 });
    const worker = await registerWorker();
    const first = await claim(worker);
    const second = await claim(worker);

    await renderAll(worker, first);
    expect(await jobRow(job.job_id)).toMatchObject({ status: 'running', completed_frames: 2 });

    for (const frame of second.frames) await json(await putFrame(worker, second, frame, pngBytes(frame)), 201);
    const done = await json<UpdateTaskStatusResponse>(await update(worker, second, 'completed', { message: 'done' }), 200);

    expect(done).toEqual({ task_id: second.task_id, status: 'completed', lease_expires_at: null, abort: false });
    const status = await json<JobStatusResponse>(await call(`/job_status/${job.job_id}`), 200);
    expect(status).toMatchObject({ status: 'completed', completed_frames: 4, queued_frames: 0, progress: 1 });
    expect(status.finished_at).not.toBeNull();
    expect((await getJob(worker)).status).toBe(204);
    // Repeating a completion that already happened is harmless.
    await json(await update(worker, second, 'completed'), 200);
  });

  it('a node that uploaded every frame but died before reporting: the next claim closes its task and the job completes', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2 });
    const dead = await registerWorker('dead');
    const next = await registerWorker('next');
    const task = await claim(dead);
    for (const frame of task.frames) await json(await uploadFrame(dead, task, frame, pngBytes(frame)), 201);
    // The node never reports; its lease runs out (see leases.test.ts for why we set the time).
    await env.DB.prepare(`UPDATE tasks SET lease_expires_at = 0 WHERE id = ?`).bind(task.task_id).run();

    const res = await getJob(next);

    expect(res.status).toBe(204);
    expect(await taskRow(task.task_id)).toMatchObject({ status: 'completed' });
    expect(await jobRow(job.job_id)).toMatchObject({ status: 'completed', completed_frames: 2 });
  });
});

describe('failures and retries', () => {
  it('a failing task is retried, and after max_attempts the job fails with an error naming the frames and a readable log', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2, max_attempts: 2 });
    const a = await registerWorker('a');
    const b = await registerWorker('b');
    const observer = await registerWorker('observer');

    const first = await claim(a);
    const retry = await json<UpdateTaskStatusResponse>(
      await update(a, first, 'failed', { message: 'Blender quit with code 11', failure_reason: 'crash', log_tail: 'Segmentation fault' }),
      200,
    );
    expect(retry.status).toBe('queued');
    expect(await taskRow(first.task_id)).toMatchObject({ status: 'queued', attempts: 1, lease_id: null, failure_reason: 'crash' });
    expect(await jobRow(job.job_id)).toMatchObject({ status: 'running', error: null });

    const second = await claim(b);
    expect(second).toMatchObject({ task_id: first.task_id, frames: [1, 2], attempt: 2 });
    const log = 'Fra:1 Mem:12M\nError: out of GPU memory\n';
    await json(
      await call(`/tasks/${second.task_id}/log`, {
        method: 'PUT',
        headers: { 'x-farm-worker-id': b, 'x-farm-lease-id': second.lease_id, 'content-length': String(log.length) },
        body: log,
      }),
      201,
    );
    const final = await json<UpdateTaskStatusResponse>(
      await update(b, second, 'failed', { message: 'Error: out of GPU memory\nmore detail', failure_reason: 'oom' }),
      200,
    );

    expect(final.status).toBe('failed');
    const status = await json<JobStatusResponse>(await call(`/job_status/${job.job_id}`), 200);
    expect(status.status).toBe('failed');
    expect(status.failed_frames).toBe(2);
    expect(status.error).toContain('frames 1-2 failed after 2 attempt(s)');
    expect(status.error).toContain('Error: out of GPU memory');
    const logUrl = `/jobs/${job.job_id}/tasks/${first.task_id}/log`;
    expect(status.error).toContain(`(log: ${logUrl})`);
    const logRes = await call(logUrl);
    expect(logRes.status).toBe(200);
    expect(await logRes.text()).toBe(log);
    // A failed job hands out nothing more.
    expect((await getJob(observer)).status).toBe(204);
  });

  it('a node that fails twice on a job is blocklisted for it: it gets 204 while other nodes still get the frames', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 3, chunk_size: 1, max_attempts: 5 });
    const flaky = await registerWorker('flaky');
    const healthy = await registerWorker('healthy');

    for (let i = 0; i < 2; i++) {
      const task = await claim(flaky);
      await json(await update(flaky, task, 'failed', { message: 'CUDA error', failure_reason: 'gpu' }), 200);
    }

    const blocklist = await json<{
      max_node_failures: number;
      nodes: { worker_id: string; name: string; failures: number; blocked: boolean; last_reason: string }[];
    }>(await call(`/jobs/${job.job_id}/blocklist`), 200);
    expect(blocklist.max_node_failures).toBe(2);
    expect(blocklist.nodes).toEqual([expect.objectContaining({ worker_id: flaky, name: 'flaky', failures: 2, blocked: true, last_reason: 'gpu' })]);
    const refused = await getJob(flaky);
    expect(refused.status).toBe(204);
    expect(await refused.text()).toBe('');
    const forHealthy = await claim(healthy);
    expect(forHealthy).toMatchObject({ job_id: job.job_id, frames: [1], attempt: 3 });

    // The blocklist is per job: the flaky node still gets other jobs' work.
    const other = await submitOk({ start_frame: 1, end_frame: 1 });
    expect((await claim(flaky)).job_id).toBe(other.job_id);
  });

  it("requeue_failed puts a failed job's frames back in the queue and clears its error and blocklist", async () => {
    const job = await submitOk({ start_frame: 5, end_frame: 6, chunk_size: 2, max_attempts: 1 });
    const worker = await registerWorker();
    const task = await claim(worker);
    await json(await update(worker, task, 'failed', { message: 'missing texture', failure_reason: 'render_error' }), 200);
    expect(await jobRow(job.job_id)).toMatchObject({ status: 'failed' });
    expect((await getJob(worker)).status).toBe(204);

    const res = await postJson(`/jobs/${job.job_id}/requeue_failed`, {});
    expect(await json(res, 200)).toEqual({ job_id: job.job_id, requeued_tasks: 1, status: 'running' });

    expect(await jobRow(job.job_id)).toMatchObject({ status: 'running', error: null, finished_at: null });
    expect((await countRows()).job_blocklist).toBe(0);
    const again = await claim(worker);
    expect(again).toMatchObject({ task_id: task.task_id, frames: [5, 6], attempt: 1 });
    await renderAll(worker, again);
    expect(await jobRow(job.job_id)).toMatchObject({ status: 'completed', completed_frames: 2 });
  });
});
