/**
 * The read side: the clock, .blend downloads, job lists, frames (one by one and as a ZIP),
 * tasks and logs. One rendered job is built once and only read by the tests.
 */
import { env } from 'cloudflare:workers';
import { unzipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import type { FrameInfo, JobStatusResponse, SubmitJobResponse, TaskAssignment } from '../../protocol/schemas.ts';
import { blendBytes, call, claim, json, pngBytes, putFrame, registerWorker, sha256, submitOk, update, uploadFrame, sharedFarm } from './helpers.ts';

const BLEND = blendBytes(20_000, 'reads');
/** Frame number -> the bytes the node uploaded for it. */
const FRAMES = new Map([1, 2, 3].map((f) => [f, pngBytes(`reads-${f}`, 1000 + f * 100)]));
const LOG = 'Blender 4.2.1\nFra:1 Mem:10M | Rendering 1 / 64 samples\nSaved: frame_000001.png\n';

let rendered: SubmitJobResponse;
let queuedA: SubmitJobResponse;
let queuedB: SubmitJobResponse;
let task: TaskAssignment;
let worker: string;

// The reads change nothing: one farm serves them all.
sharedFarm(async () => {
  rendered = await submitOk({ start_frame: 1, end_frame: 3, chunk_size: 3, name: 'reads job' }, BLEND);
  worker = await registerWorker('reader-node');
  task = await claim(worker);
  await json(await uploadFrame(worker, task, 1, FRAMES.get(1)!), 201);
  await json(await putFrame(worker, task, 2, FRAMES.get(2)!), 201);
  await json(await putFrame(worker, task, 3, FRAMES.get(3)!), 201);
  await json(
    await call(`/tasks/${task.task_id}/log`, {
      method: 'PUT',
      headers: { 'x-farm-worker-id': worker, 'x-farm-lease-id': task.lease_id, 'content-length': String(new TextEncoder().encode(LOG).length) },
      body: LOG,
    }),
    201,
  );
  await json(await update(worker, task, 'completed'), 200);
  // Two more jobs, left queued, for the job list.
  queuedA = await submitOk({ start_frame: 1, end_frame: 10, name: 'queued a' });
  queuedB = await submitOk({ start_frame: 1, end_frame: 10, name: 'queued b' });
});

describe('GET /time', () => {
  it("answers the master's clock as ISO time and epoch ms, both matching now", async () => {
    const before = Date.now();
    const body = await json<{ time: string; epoch_ms: number }>(await call('/time'), 200);
    expect(Math.abs(body.epoch_ms - before)).toBeLessThan(5_000);
    expect(body.time).toBe(new Date(body.epoch_ms).toISOString());
  });
});

describe('GET /download_blend/{blend_file}', () => {
  it('streams the exact bytes that were submitted', async () => {
    const res = await call(`/download_blend/${rendered.blend_file}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(BLEND.length));
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect(await sha256(await res.arrayBuffer())).toBe(await sha256(BLEND));
  });

  it('a Range request (a node resuming a download) gets 206 with exactly the bytes asked for', async () => {
    const res = await call(`/download_blend/${rendered.blend_file}`, { headers: { range: 'bytes=100-1099' } });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe(`bytes 100-1099/${BLEND.length}`);
    expect(res.headers.get('content-length')).toBe('1000');
    expect(await sha256(await res.arrayBuffer())).toBe(await sha256(BLEND.slice(100, 1100)));

    const tail = await call(`/download_blend/${rendered.blend_file}`, { headers: { range: 'bytes=19000-' } });
    expect(tail.status).toBe(206);
    expect(tail.headers.get('content-range')).toBe(`bytes 19000-19999/${BLEND.length}`);
    expect(await sha256(await tail.arrayBuffer())).toBe(await sha256(BLEND.slice(19000)));
  });
});

describe('GET /jobs', () => {
  it('pages through every job with limit=1 and next_cursor, newest first, each job once', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 10; page++) {
      const query: string = cursor ? `?limit=1&cursor=${encodeURIComponent(cursor)}` : '?limit=1';
      const body: { jobs: JobStatusResponse[]; next_cursor: string | null } = await json(await call(`/jobs${query}`), 200);
      expect(body.jobs.length).toBeLessThanOrEqual(1);
      seen.push(...body.jobs.map((j) => j.job_id));
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    const { results } = await env.DB.prepare(`SELECT id FROM jobs ORDER BY created_at DESC, id DESC`).all<{ id: string }>();
    expect(seen).toEqual(results.map((r) => r.id));
    expect(new Set(seen)).toEqual(new Set([rendered.job_id, queuedA.job_id, queuedB.job_id]));
  });

  it('filters by status', async () => {
    const completed = await json<{ jobs: JobStatusResponse[] }>(await call('/jobs?status=completed'), 200);
    expect(completed.jobs.map((j) => [j.job_id, j.status, j.completed_frames])).toEqual([[rendered.job_id, 'completed', 3]]);
    const queued = await json<{ jobs: JobStatusResponse[] }>(await call('/jobs?status=queued'), 200);
    expect(new Set(queued.jobs.map((j) => j.job_id))).toEqual(new Set([queuedA.job_id, queuedB.job_id]));
  });
});

describe('frames', () => {
  it('GET /jobs/{id}/frames lists every stored frame with its size, hash and download url', async () => {
    const body = await json<{ frames: FrameInfo[]; next_after: number | null }>(await call(`/jobs/${rendered.job_id}/frames`), 200);
    const expected = await Promise.all(
      [...FRAMES].map(async ([frame, bytes]) => ({
        frame,
        size: bytes.length,
        sha256: await sha256(bytes),
        url: `/jobs/${rendered.job_id}/frames/${frame}`,
        file_name: `frame_00000${frame}.png`,
      })),
    );
    expect(body.frames.map(({ frame, size, sha256, url, file_name }) => ({ frame, size, sha256, url, file_name }))).toEqual(expected);
    expect(body.next_after).toBeNull();

    const paged = await json<{ frames: FrameInfo[]; next_after: number | null }>(await call(`/jobs/${rendered.job_id}/frames?limit=2&after=1`), 200);
    expect(paged.frames.map((f) => f.frame)).toEqual([2, 3]);
    expect(paged.next_after).toBe(3);
  });

  it('GET /jobs/{id}/frames/{frame} serves the bytes the node uploaded', async () => {
    for (const [frame, bytes] of FRAMES) {
      const res = await call(`/jobs/${rendered.job_id}/frames/${frame}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('image/png');
      expect(res.headers.get('x-farm-sha256')).toBe(await sha256(bytes));
      expect(await sha256(await res.arrayBuffer())).toBe(await sha256(bytes));
    }
  });

  it('GET /jobs/{id}/frames.zip is a ZIP of stored (uncompressed) entries named frame_000001.png... holding the uploaded bytes', async () => {
    const res = await call(`/jobs/${rendered.job_id}/frames.zip`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/zip');
    expect(res.headers.get('content-disposition')).toContain('reads_job.zip');
    const zip = new Uint8Array(await res.arrayBuffer());

    expect(centralDirectory(zip)).toEqual([
      { name: 'frame_000001.png', method: 0 },
      { name: 'frame_000002.png', method: 0 },
      { name: 'frame_000003.png', method: 0 },
    ]);
    const files = unzipSync(zip);
    for (const [frame, bytes] of FRAMES) {
      expect(await sha256(files[`frame_00000${frame}.png`]!)).toBe(await sha256(bytes));
    }
  });
});

/** Names and compression methods from a ZIP's central directory (method 0 = stored). */
function centralDirectory(zip: Uint8Array): { name: string; method: number }[] {
  const view = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  let end = zip.length - 22;
  while (end >= 0 && view.getUint32(end, true) !== 0x06054b50) end--;
  expect(end, 'end of central directory record').toBeGreaterThanOrEqual(0);
  const count = view.getUint16(end + 10, true);
  let at = view.getUint32(end + 16, true);
  const entries: { name: string; method: number }[] = [];
  for (let i = 0; i < count; i++) {
    expect(view.getUint32(at, true)).toBe(0x02014b50);
    const method = view.getUint16(at + 10, true);
    const nameLength = view.getUint16(at + 28, true);
    const extraLength = view.getUint16(at + 30, true);
    const commentLength = view.getUint16(at + 32, true);
    entries.push({ name: new TextDecoder().decode(zip.subarray(at + 46, at + 46 + nameLength)), method });
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

describe('tasks and logs', () => {
  it('GET /jobs/{id}/tasks lists the claimed ranges with their node, state and log link', async () => {
    const body = await json<{ tasks: Record<string, unknown>[] }>(await call(`/jobs/${rendered.job_id}/tasks`), 200);
    expect(body.tasks).toEqual([
      expect.objectContaining({
        task_id: task.task_id,
        start_frame: 1,
        end_frame: 3,
        status: 'completed',
        worker_id: worker,
        attempts: 1,
        lease_expires_at: null,
        log_url: `/jobs/${rendered.job_id}/tasks/${task.task_id}/log`,
      }),
    ]);
    // A job nobody has claimed yet has no tasks at all.
    expect(await json(await call(`/jobs/${queuedA.job_id}/tasks`), 200)).toEqual({ job_id: queuedA.job_id, tasks: [] });
  });

  it('a log sent with PUT /tasks/{id}/log reads back whole from GET /jobs/{id}/tasks/{id}/log', async () => {
    const res = await call(`/jobs/${rendered.job_id}/tasks/${task.task_id}/log`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    expect(await res.text()).toBe(LOG);
  });
});

describe('GET /workers', () => {
  it('lists the node with the frames it rendered and no current task', async () => {
    const body = await json<{ workers: Record<string, unknown>[] }>(await call('/workers'), 200);
    expect(body.workers).toEqual([
      expect.objectContaining({ worker_id: worker, name: 'reader-node', online: true, frames_rendered: 3, failures: 0, current_task_id: null }),
    ]);
  });
});
