/**
 * The people's side of the master: pausing, resuming, canceling, reprioritising and deleting
 * jobs; the node list and draining/disabling nodes; frame previews; webhooks. Each test checks
 * what `job_status` (or D1 and R2) reports afterwards and what render nodes are then told.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import type {
  DeleteJobResponse,
  FrameListResponse,
  JobControlResponse,
  TaskListResponse,
  WebhookStatus,
  WorkerControlResponse,
  WorkerListResponse,
} from '../../protocol/api.ts';
import type { TaskAssignment, UpdateTaskStatusResponse } from '../../protocol/schemas.ts';
import { runScheduledWork } from '../../edge/cron.ts';
import { claimDueWebhooks, deliverWebhook } from '../../edge/webhooks.ts';
import {
  call,
  claim,
  countRows,
  expectError,
  expectRefusedUnchanged,
  getJob,
  json,
  jobRow,
  pngBytes,
  postJson,
  putFrame,
  registerWorker,
  renderAll,
  submitJob,
  submitOk,
  taskRow,
  update,
  jobStatus,
  webhookReceiver,
} from './helpers.ts';

const control = (jobId: string, action: string) => call(`/jobs/${jobId}/${action}`, { method: 'POST' });
const patchJob = (jobId: string, body: unknown) =>
  call(`/jobs/${jobId}`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

/** A JPEG-looking body: the master stores previews as sent. */
function jpegBytes(tag: string, size = 200): Uint8Array {
  const bytes = new Uint8Array(size);
  bytes.set([0xff, 0xd8, 0xff, 0xe0]);
  for (let i = 4; i < size; i++) bytes[i] = (tag.charCodeAt(i % tag.length) + i) & 0xff;
  return bytes;
}

function putPreview(workerId: string, task: Pick<TaskAssignment, 'task_id' | 'lease_id'>, frame: number, bytes: Uint8Array, contentType = 'image/jpeg') {
  return call(`/tasks/${task.task_id}/frames/${frame}/preview`, {
    method: 'PUT',
    headers: { 'content-type': contentType, 'content-length': String(bytes.length), 'x-farm-worker-id': workerId, 'x-farm-lease-id': task.lease_id },
    body: bytes,
  });
}

async function r2Keys(prefix: string): Promise<string[]> {
  return (await env.FILES.list({ prefix })).objects.map((o) => o.key);
}

describe('pause and resume', () => {
  it('a paused job hands out no new frames, the frames being rendered finish, and resume makes it claimable again', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 4, chunk_size: 2 });
    const node = await registerWorker('pauser');
    const first = await claim(node);

    const paused = await json<JobControlResponse>(await control(job.job_id, 'pause'), 200);
    expect(paused).toMatchObject({ job_id: job.job_id, status: 'paused', previous_status: 'running' });
    expect((await jobStatus(job.job_id)).status).toBe('paused');
    // No new work for anyone...
    expect((await getJob(await registerWorker('idle'))).status).toBe(204);
    // ...but the task in hand is renewed without an abort and may complete.
    const renewed = await json<UpdateTaskStatusResponse>(await update(node, first, 'running'), 200);
    expect(renewed.abort).toBe(false);
    await renderAll(node, first);
    expect(await jobStatus(job.job_id)).toMatchObject({ status: 'paused', completed_frames: 2 });
    expect((await getJob(node)).status).toBe(204);

    const resumed = await json<JobControlResponse>(await control(job.job_id, 'resume'), 200);
    expect(resumed).toMatchObject({ status: 'running', previous_status: 'paused' });
    const second = await claim(node);
    expect(second.frames).toEqual([3, 4]);
  });

  it('pausing twice changes nothing the second time, and resuming a job that never started queues it again', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2 });
    await json(await control(job.job_id, 'pause'), 200);
    const again = await json<JobControlResponse>(await control(job.job_id, 'pause'), 200);
    expect(again).toMatchObject({ status: 'paused', previous_status: 'paused' });
    const resumed = await json<JobControlResponse>(await control(job.job_id, 'resume'), 200);
    expect(resumed.status).toBe('queued');
    const running = await json<JobControlResponse>(await control(job.job_id, 'resume'), 200);
    expect(running).toMatchObject({ status: 'queued', previous_status: 'queued' });
  });

  it('a paused job whose last frames finish while it is paused completes', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2 });
    const node = await registerWorker();
    const task = await claim(node);
    await json(await control(job.job_id, 'pause'), 200);
    await renderAll(node, task);
    expect((await jobStatus(job.job_id)).status).toBe('completed');
  });
});

describe('cancel', () => {
  it('stops a running job: the node is refused at its next renewal and upload, no frame is handed out again, nothing counts as running', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 6, chunk_size: 3 });
    const node = await registerWorker('canceled-node');
    const task = await claim(node);
    await json(await putFrame(node, task, 1, pngBytes(1)), 201);

    const canceled = await json<JobControlResponse>(await control(job.job_id, 'cancel'), 200);
    expect(canceled).toMatchObject({ status: 'canceled', previous_status: 'running', running_frames: 0, completed_frames: 1 });
    expect(canceled.finished_at).not.toBeNull();

    await expectError(await update(node, task, 'running'), 409, 'stop working on it');
    await expectError(await putFrame(node, task, 2, pngBytes(2)), 409, 'stop working on it');
    expect((await getJob(node)).status).toBe(204);
    const tasks = await json<TaskListResponse>(await call(`/jobs/${job.job_id}/tasks`), 200);
    expect(tasks.tasks[0]).toMatchObject({ status: 'queued', message: expect.stringContaining('canceled') });
    // The interrupted attempt is not counted against the frames.
    expect((await taskRow(task.task_id))!.attempts).toBe(0);
  });

  it('a canceled job can be resumed: its interrupted frames are handed out again', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2 });
    const node = await registerWorker();
    const task = await claim(node);
    await json(await control(job.job_id, 'cancel'), 200);
    const resumed = await json<JobControlResponse>(await control(job.job_id, 'resume'), 200);
    expect(resumed).toMatchObject({ status: 'running', previous_status: 'canceled', finished_at: null });
    const again = await claim(node);
    expect(again.task_id).toBe(task.task_id);
    expect(again.frames).toEqual([1, 2]);
    expect(again.attempt).toBe(1);
  });

  it('a completed job cannot be canceled or paused; the 409 says what can be done instead, and nothing changes', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1 });
    const node = await registerWorker();
    await renderAll(node, await claim(node));
    const before = await jobRow(job.job_id);
    await expectRefusedUnchanged(() => control(job.job_id, 'cancel'), 409, `job ${job.job_id} is completed, so it cannot be canceled`);
    await expectRefusedUnchanged(() => control(job.job_id, 'pause'), 409, 'DELETE /jobs/');
    await expectRefusedUnchanged(() => control(job.job_id, 'resume'), 409, 'cannot be resumed');
    expect(await jobRow(job.job_id)).toEqual(before);
  });

  it('a failed job cannot be resumed: the answer points to requeue', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1, max_attempts: 1 });
    const node = await registerWorker();
    const task = await claim(node);
    await json(await update(node, task, 'failed', { message: 'boom', failure_reason: 'crash' }), 200);
    expect((await jobStatus(job.job_id)).status).toBe('failed');
    await expectRefusedUnchanged(() => control(job.job_id, 'resume'), 409, `requeue_failed (farm requeue ${job.job_id})`);
  });

  it('unknown and malformed job ids are 404 and 400', async () => {
    await expectError(await control('0b7d6a8e-3f1c-4c52-9a43-5d2e8f0a1b2c', 'cancel'), 404, 'no job with id');
    await expectError(await control('not-an-id', 'pause'), 400, 'job_id is not a valid id');
  });
});

describe('PATCH /jobs/{id}: priority', () => {
  it('raising an older job above a newer one makes nodes take it first', async () => {
    const low = await submitOk({ start_frame: 1, end_frame: 1, priority: 10, name: 'low' });
    const high = await submitOk({ start_frame: 1, end_frame: 1, priority: 60, name: 'high' });
    const changed = await json<JobControlResponse>(await patchJob(low.job_id, { priority: 90 }), 200);
    expect(changed.priority).toBe(90);
    expect((await jobStatus(low.job_id)).priority).toBe(90);
    const node = await registerWorker();
    expect((await claim(node)).job_id).toBe(low.job_id);
    expect((await claim(await registerWorker('second'))).job_id).toBe(high.job_id);
  });

  it.each([
    [{ priority: 101 }, 'priority must be a whole number from 0 to 100'],
    [{ priority: 5.5 }, 'priority must be a whole number'],
    [{ priority: '50' }, 'priority must be a number'],
    [{}, 'send at least one of priority, webhook_url'],
    [{ priority: 5, status: 'running' }, 'unknown field(s): status'],
    [{ webhook_url: 'ftp://example.com/hook' }, 'webhook_url must be an http:// or https:// URL'],
    [{ webhook_url: 'https://user:secret@example.com/hook' }, 'without a user name or password'],
    [{ webhook_url: 'not a url' }, 'webhook_url must be an http'],
  ])('%j is refused with 400 and changes nothing', async (body, phrase) => {
    const job = await submitOk({ start_frame: 1, end_frame: 1 });
    await expectRefusedUnchanged(() => patchJob(job.job_id, body), 400, phrase);
    expect((await jobStatus(job.job_id)).priority).toBe(50);
  });

  it('a body that is not JSON is a 415', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1 });
    await expectError(await call(`/jobs/${job.job_id}`, { method: 'PATCH', body: 'priority=5' }), 415, 'Content-Type: application/json');
  });
});

describe('DELETE /jobs/{id}', () => {
  it('answers 404 for the job at once and refuses the node rendering it; the cron then removes its tasks, frames, previews and logs from D1 and R2 and keeps the shared .blend', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 3, chunk_size: 3 });
    const other = await submitOk({ start_frame: 1, end_frame: 1, name: 'other' });
    const node = await registerWorker();
    const task = await claim(node);
    expect(task.job_id).toBe(job.job_id);
    await json(await putFrame(node, task, 1, pngBytes(1)), 201);
    await json(await putPreview(node, task, 1, jpegBytes('p1')), 201);
    const log = 'Fra:1\nSaved: frame_000001.png\n';
    await json(
      await call(`/tasks/${task.task_id}/log`, {
        method: 'PUT',
        headers: { 'x-farm-worker-id': node, 'x-farm-lease-id': task.lease_id, 'content-length': String(log.length) },
        body: log,
      }),
      201,
    );
    expect(await r2Keys(`renders/${job.job_id}/`)).toHaveLength(1);
    expect(await r2Keys(`previews/${job.job_id}/`)).toHaveLength(1);
    expect(await r2Keys(`logs/${job.job_id}/`)).toHaveLength(1);

    // The request only marks the job: its files go with the next cron runs.
    const deleted = await json<DeleteJobResponse>(await call(`/jobs/${job.job_id}`, { method: 'DELETE' }), 200);
    expect(deleted).toEqual({ job_id: job.job_id, deleted: true, deleted_objects: 0 });
    for (const path of [
      `/job_status/${job.job_id}`,
      `/jobs/${job.job_id}/frames`,
      `/jobs/${job.job_id}/frames/1`,
      `/jobs/${job.job_id}/frames/1/preview`,
      `/jobs/${job.job_id}/tasks/${task.task_id}/log`,
      `/jobs/${job.job_id}/webhook`,
    ]) {
      await expectError(await call(path), 404, /no job with id|no task/);
    }
    const list = await json<{ jobs: { job_id: string }[] }>(await call('/jobs'), 200);
    expect(list.jobs.map((j) => j.job_id)).toEqual([other.job_id]);
    // The node still rendering it is told to stop and can record nothing more.
    await expectError(await update(node, task, 'running'), 409, 'stop working on it');
    await expectError(await putFrame(node, task, 2, pngBytes(2)), 409, 'stop working on it');
    expect(await r2Keys(`renders/${job.job_id}/`)).toHaveLength(1);
    // The job's work is no longer handed out: the node gets the other job.
    expect((await claim(node)).job_id).toBe(other.job_id);
    await expectError(await call(`/jobs/${job.job_id}`, { method: 'DELETE' }), 404, 'no job with id');

    await runScheduledWork(env, Date.now());
    for (const table of ['jobs', 'tasks', 'frames', 'job_blocklist']) {
      const column = table === 'jobs' ? 'id' : 'job_id';
      const row = await env.DB.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE ${column} = ?`).bind(job.job_id).first<{ n: number }>();
      expect(row!.n, table).toBe(0);
    }
    for (const prefix of [`renders/${job.job_id}/`, `previews/${job.job_id}/`, `logs/${job.job_id}/`]) expect(await r2Keys(prefix)).toEqual([]);
    // The .blend is stored by content and the other job uses the same file.
    const input = await env.DB.prepare(`SELECT r2_key FROM blobs WHERE sha256 = ?`).bind(job.blend_file.split('.')[0]).first<string>('r2_key');
    expect(await env.FILES.head(input!)).not.toBeNull();
    expect((await jobStatus(other.job_id)).status).toBe('running');
    await expectError(await update(node, task, 'running'), 404, 'no task');
  });
});

describe('nodes: list, drain, disable, enable', () => {
  it('lists a node with its devices, its state and its current task', async () => {
    const res = await postJson('/register_worker', {
      name: 'gpu-box',
      devices: [
        { type: 'CPU', name: 'AMD Ryzen 9 (16 threads)' },
        { type: 'OPTIX', name: 'NVIDIA RTX 4090' },
      ],
    });
    const { worker_id: node } = await json<{ worker_id: string }>(res, 201);
    let list = await json<WorkerListResponse>(await call('/workers'), 200);
    expect(list.workers).toHaveLength(1);
    expect(list.workers[0]).toMatchObject({
      worker_id: node,
      name: 'gpu-box',
      online: true,
      enabled: true,
      state: 'idle',
      current_task_id: null,
      devices: [
        { type: 'CPU', name: 'AMD Ryzen 9 (16 threads)' },
        { type: 'OPTIX', name: 'NVIDIA RTX 4090' },
      ],
    });
    const job = await submitOk({ start_frame: 5, end_frame: 5 });
    const task = await claim(node);
    await json(await update(node, task, 'running', { current_frame: 5 }), 200);
    list = await json<WorkerListResponse>(await call('/workers'), 200);
    expect(list.workers[0]).toMatchObject({ state: 'rendering', current_task_id: task.task_id, current_job_id: job.job_id, current_frame: 5 });
    // A node is online for a lease plus the longest long poll (30 s) after it was last recorded.
    await env.DB.prepare(`UPDATE workers SET last_seen_at = ?`)
      .bind(Date.now() - 85_000)
      .run();
    list = await json<WorkerListResponse>(await call('/workers'), 200);
    expect(list.workers[0]).toMatchObject({ online: true });
    await env.DB.prepare(`UPDATE workers SET last_seen_at = ?`)
      .bind(Date.now() - 91_000)
      .run();
    list = await json<WorkerListResponse>(await call('/workers'), 200);
    expect(list.workers[0]).toMatchObject({ online: false, state: 'offline' });
  });

  it('a drained node finishes its task but gets no new work until enabled', async () => {
    await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 1 });
    const node = await registerWorker('drained');
    const task = await claim(node);
    const drained = await json<WorkerControlResponse>(await call(`/workers/${node}/drain`, { method: 'POST' }), 200);
    expect(drained).toMatchObject({ enabled: false, state: 'draining', released_tasks: 0, current_task_id: task.task_id });
    await json(await update(node, task, 'running'), 200);
    await renderAll(node, task);
    expect((await getJob(node)).status).toBe(204);
    const list = await json<WorkerListResponse>(await call('/workers'), 200);
    expect(list.workers[0]!.state).toBe('disabled');
    const enabled = await json<WorkerControlResponse>(await call(`/workers/${node}/enable`, { method: 'POST' }), 200);
    expect(enabled).toMatchObject({ enabled: true, state: 'idle' });
    expect((await claim(node)).frames).toEqual([2]);
  });

  it('a disabled node loses its task at once: it goes back to the queue without using an attempt and another node takes it', async () => {
    await submitOk({ start_frame: 1, end_frame: 1 });
    const node = await registerWorker('disabled');
    const task = await claim(node);
    const disabled = await json<WorkerControlResponse>(await call(`/workers/${node}/disable`, { method: 'POST' }), 200);
    expect(disabled).toMatchObject({ enabled: false, state: 'disabled', released_tasks: 1, current_task_id: null });
    await expectError(await update(node, task, 'running'), 409, 'stop working on it');
    const other = await registerWorker('other');
    const taken = await claim(other);
    expect(taken).toMatchObject({ task_id: task.task_id, attempt: 1 });
    expect((await getJob(node)).status).toBe(204);
  });

  it('controls on an unknown node are 404, and a bad id is 400', async () => {
    await expectRefusedUnchanged(() => call('/workers/0b7d6a8e-3f1c-4c52-9a43-5d2e8f0a1b2c/drain', { method: 'POST' }), 404, 'farm nodes');
    await expectError(await call('/workers/nope/disable', { method: 'POST' }), 400, 'worker_id is not a valid id');
  });
});

describe('frame previews', () => {
  it('a preview uploaded after its frame is listed with the frame and served as an image', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2 });
    const node = await registerWorker();
    const task = await claim(node);
    await json(await putFrame(node, task, 1, pngBytes(1)), 201);
    await json(await putFrame(node, task, 2, pngBytes(2)), 201);
    const preview = jpegBytes('one');
    const stored = await json<{ preview_url: string }>(await putPreview(node, task, 1, preview), 201);
    expect(stored.preview_url).toBe(`/jobs/${job.job_id}/frames/1/preview`);

    const list = await json<FrameListResponse>(await call(`/jobs/${job.job_id}/frames`), 200);
    expect(list.frames.map((f) => [f.frame, f.preview_url])).toEqual([
      [1, stored.preview_url],
      [2, null],
    ]);
    const res = await call(stored.preview_url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/jpeg');
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(preview);
    await expectError(await call(`/jobs/${job.job_id}/frames/2/preview`), 404, 'has no preview');

    // A second preview of the same frame replaces the first, in D1 and in R2.
    const replacement = jpegBytes('two', 300);
    await json(await putPreview(node, task, 1, replacement, 'image/png'), 201);
    expect(new Uint8Array(await (await call(stored.preview_url)).arrayBuffer())).toEqual(replacement);
    expect(await r2Keys(`previews/${job.job_id}/`)).toHaveLength(1);
  });

  it("the last frame's preview is still accepted once the job completed and closed its task, but not from a node that lost the task", async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1 });
    const node = await registerWorker();
    const task = await claim(node);
    await json(await putFrame(node, task, 1, pngBytes(1)), 201);
    await json(await update(node, task, 'completed'), 200);
    expect((await jobStatus(job.job_id)).status).toBe('completed');
    await json(await putPreview(node, task, 1, jpegBytes('late')), 201);
    expect((await json<FrameListResponse>(await call(`/jobs/${job.job_id}/frames`), 200)).frames[0]!.preview_url).not.toBeNull();

    await submitOk({ start_frame: 1, end_frame: 1 });
    const other = await claim(node);
    await json(await putFrame(node, other, 1, pngBytes(1)), 201);
    await json(await call(`/workers/${node}/disable`, { method: 'POST' }), 200);
    await expectRefusedUnchanged(() => putPreview(node, other, 1, jpegBytes('x')), 409, 'not the current lease');
  });

  it('refuses a preview before its frame (409), of another type (415), too large (413), without a lease (409)', async () => {
    await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2 });
    const node = await registerWorker();
    const task = await claim(node);
    await expectRefusedUnchanged(() => putPreview(node, task, 1, jpegBytes('x')), 409, 'upload the frame before its preview');
    await json(await putFrame(node, task, 1, pngBytes(1)), 201);
    await expectRefusedUnchanged(() => putPreview(node, task, 1, jpegBytes('x'), 'image/x-exr'), 415, 'image/jpeg or image/png');
    await expectRefusedUnchanged(
      () =>
        call(`/tasks/${task.task_id}/frames/1/preview`, {
          method: 'PUT',
          headers: { 'content-type': 'image/jpeg', 'content-length': String(3 * 1024 * 1024), 'x-farm-worker-id': node, 'x-farm-lease-id': task.lease_id },
          body: new Uint8Array(10),
        }),
      413,
      'over the limit',
    );
    await expectRefusedUnchanged(
      () => putPreview(node, { ...task, lease_id: '0b7d6a8e-3f1c-4c52-9a43-5d2e8f0a1b2c' }, 1, jpegBytes('x')),
      409,
      'not the current lease',
    );
    await expectRefusedUnchanged(() => putPreview(node, task, 7, jpegBytes('x')), 400, 'frame 7 is not in task');
  });
});

describe('webhooks', () => {
  const URL_OK = 'https://hooks.example.com/farm?job=1';
  /** What the receiver answers (then 500), and the calls it got. */
  const receiver = webhookReceiver(500);
  const calls = receiver.calls;

  const webhookStatus = async (jobId: string) => json<WebhookStatus>(await call(`/jobs/${jobId}/webhook`), 200);
  async function waitForWebhook(jobId: string, states: string[]): Promise<WebhookStatus> {
    for (let i = 0; i < 100; i++) {
      const hook = await webhookStatus(jobId);
      if (hook.state && states.includes(hook.state)) return hook;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`the webhook of job ${jobId} never reached ${states.join(' or ')}: ${JSON.stringify(await webhookStatus(jobId))}`);
  }

  async function jobWithWebhook(fields: Record<string, number> = {}): Promise<string> {
    const job = await submitOk({ start_frame: 1, end_frame: 1, ...fields });
    await json(await patchJob(job.job_id, { webhook_url: URL_OK }), 200);
    return job.job_id;
  }

  it('a job with a webhook is armed and not called while it runs', async () => {
    const jobId = await jobWithWebhook();
    expect(await webhookStatus(jobId)).toEqual({
      job_id: jobId,
      webhook_url: URL_OK,
      state: 'armed',
      attempts: 0,
      last_error: null,
      delivered_at: null,
      signed: false,
      warning: null,
    });
    const node = await registerWorker();
    const task = await claim(node);
    await json(await update(node, task, 'running'), 200);
    await new Promise((r) => setTimeout(r, 200));
    expect(calls).toEqual([]);
    expect((await webhookStatus(jobId)).state).toBe('armed');
  });

  it('on completion the job is POSTed to the URL; failed calls are retried and recorded until one succeeds, then never again', async () => {
    const jobId = await jobWithWebhook();
    receiver.answers = [503, 500, 204];
    const node = await registerWorker();
    await renderAll(node, await claim(node));
    const hook = await waitForWebhook(jobId, ['delivered', 'failed']);
    expect(hook).toMatchObject({ state: 'delivered', attempts: 3, last_error: null });
    expect(hook.delivered_at).not.toBeNull();
    expect(calls).toHaveLength(3);
    expect(calls[0]!.url).toBe(URL_OK);
    expect(calls[0]!.method).toBe('POST');
    expect(calls[0]!.headers.get('x-farm-event')).toBe('job.completed');
    expect(calls[2]!.payload).toMatchObject({ event: 'job.completed', job: { job_id: jobId, status: 'completed', completed_frames: 1 } });
    // Later requests sweep again but find nothing due.
    await json(await patchJob(jobId, { priority: 7 }), 200);
    await new Promise((r) => setTimeout(r, 100));
    expect(calls).toHaveLength(3);
  });

  it('a webhook that never answers 2xx ends failed with the last error, after every attempt', async () => {
    const jobId = await jobWithWebhook();
    receiver.answers = [500, 500, 500, 404];
    const node = await registerWorker();
    await renderAll(node, await claim(node));
    const hook = await waitForWebhook(jobId, ['delivered', 'failed']);
    expect(hook).toMatchObject({ state: 'failed', attempts: 4, last_error: 'the webhook answered HTTP 404' });
    expect(calls).toHaveLength(4);
  });

  it('a failed job sends job.failed; requeueing it arms the webhook again, and its completion sends job.completed', async () => {
    const jobId = await jobWithWebhook({ max_attempts: 1 });
    receiver.answers = [200, 200];
    const node = await registerWorker();
    const task = await claim(node);
    await json(await update(node, task, 'failed', { message: 'Blender crashed', failure_reason: 'crash' }), 200);
    await waitForWebhook(jobId, ['delivered']);
    expect(calls.map((c) => c.payload.event)).toEqual(['job.failed']);
    expect(calls[0]!.payload.job.error).toContain('Blender crashed');

    await json(await postJson(`/jobs/${jobId}/requeue_failed`, {}), 200);
    await renderAll(node, await claim(node));
    await new Promise((r) => setTimeout(r, 50));
    await waitForWebhook(jobId, ['delivered']);
    expect(calls.map((c) => c.payload.event)).toEqual(['job.failed', 'job.completed']);
  });

  it('a webhook given at submission (curl -F webhook_url=...) is armed; a bad one is refused and nothing is stored', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1, webhook_url: URL_OK });
    expect(await webhookStatus(job.job_id)).toMatchObject({ webhook_url: URL_OK, state: 'armed' });
    await expectRefusedUnchanged(
      () => submitJob({ start_frame: 1, end_frame: 1, webhook_url: 'javascript:alert(1)' }),
      400,
      'webhook_url must be an http:// or https:// URL',
    );
  });

  it('a webhook added to a finished job is called at once', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1 });
    const node = await registerWorker();
    await renderAll(node, await claim(node));
    receiver.answers = [200];
    await json(await patchJob(job.job_id, { webhook_url: URL_OK }), 200);
    expect(await waitForWebhook(job.job_id, ['delivered'])).toMatchObject({ attempts: 1 });
  });

  it('a delivery claimed by an isolate that died is taken again after a while; removing the URL disarms it', async () => {
    const jobId = await jobWithWebhook();
    await env.DB.prepare(`UPDATE jobs SET status = 'completed', webhook_state = 'sending', webhook_updated_at = ? WHERE id = ?`).bind(Date.now(), jobId).run();
    expect(await claimDueWebhooks(env.DB, Date.now())).toHaveLength(0);
    const [stale] = await claimDueWebhooks(env.DB, Date.now() + 6 * 60_000);
    expect(stale!.id).toBe(jobId);
    receiver.answers = [204];
    expect(await deliverWebhook(env.DB, stale!)).toBe(true);
    expect((await webhookStatus(jobId)).state).toBe('delivered');
    await json(await patchJob(jobId, { webhook_url: null }), 200);
    expect(await webhookStatus(jobId)).toMatchObject({ webhook_url: null, state: null });
  });

  it('a webhook GET on an unknown job is a 404 and changes nothing', async () => {
    const before = await countRows();
    await expectError(await call('/jobs/0b7d6a8e-3f1c-4c52-9a43-5d2e8f0a1b2c/webhook'), 404, 'no job with id');
    expect(await countRows()).toEqual(before);
  });
});
