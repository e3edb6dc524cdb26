/**
 * Work goes only where it can run: jobs' device requirements and tags against the nodes'
 * backends and tags, task kinds against what a node said it runs; and the task kinds beyond
 * rendering: a split still's tiles and stitch, a preview video made once every frame is stored.
 */
import { describe, expect, it } from 'vitest';
import type { RegisterWorkerRequest, RegisterWorkerResponse, TaskAssignment } from '../../protocol/schemas.ts';
import type { TaskListResponse } from '../../protocol/api.ts';
import { call, claim, expectError, getJob, json, pngBytes, postJson, putFrame, renderAll, sha256, submitJob, submitOk, update, jobStatus } from './helpers.ts';

const CPU = [{ type: 'CPU', name: 'EPYC' }];
const CUDA = [...CPU, { type: 'CUDA', name: 'RTX 4090' }];

async function node(name: string, extra: Partial<RegisterWorkerRequest> = {}): Promise<string> {
  const res = await postJson('/register_worker', { name, devices: CPU, ...extra });
  return (await json<RegisterWorkerResponse>(res, 201)).worker_id;
}

async function noWork(workerId: string): Promise<void> {
  expect((await getJob(workerId)).status).toBe(204);
}

const tasksOf = async (jobId: string) => (await json<TaskListResponse>(await call(`/jobs/${jobId}/tasks`), 200)).tasks;

function putOutput(workerId: string, task: TaskAssignment, bytes: Uint8Array, contentType: string): Promise<Response> {
  return call(`/tasks/${task.task_id}/output`, {
    method: 'PUT',
    headers: { 'content-type': contentType, 'content-length': String(bytes.length), 'x-farm-worker-id': workerId, 'x-farm-lease-id': task.lease_id },
    body: bytes,
  });
}

function input(workerId: string, task: TaskAssignment, n: number): Promise<Response> {
  return call(`/tasks/${task.task_id}/inputs/${n}`, { headers: { 'x-farm-worker-id': workerId, 'x-farm-lease-id': task.lease_id } });
}

describe('device requirements and tags', () => {
  it('a GPU job goes only to a node with a GPU, a named backend only to a node with it', async () => {
    const cpu = await node('cpu-only');
    const gpu = await node('cuda', { devices: CUDA });
    const gpuJob = await submitOk({ start_frame: 1, end_frame: 1, device: 'gpu' });
    const optixJob = await submitOk({ start_frame: 1, end_frame: 1, device: 'optix' });
    await noWork(cpu);
    const task = await claim(gpu);
    expect(task).toMatchObject({ job_id: gpuJob.job_id, device: 'gpu', kind: 'render', tile: null });
    // Nobody here has OptiX: the job waits, queued, with no task.
    await noWork(gpu);
    await noWork(cpu);
    expect((await jobStatus(optixJob.job_id)).status).toBe('queued');
    expect(await tasksOf(optixJob.job_id)).toEqual([]);
    // The node list says what each node renders with.
    const nodes = (await json<{ workers: { name: string; backends: string[] }[] }>(await call('/workers'), 200)).workers;
    expect(Object.fromEntries(nodes.map((n) => [n.name, n.backends]))).toEqual({ 'cpu-only': ['cpu'], cuda: ['cpu', 'cuda'] });
  });

  it('a higher-priority job no node here can run does not hold back the work they can', async () => {
    const cpu = await node('cpu-only');
    await submitOk({ start_frame: 1, end_frame: 2, device: 'cuda', priority: 90 });
    const cpuJob = await submitOk({ start_frame: 1, end_frame: 4, chunk_size: 2, device: 'cpu', priority: 10 });
    const first = await claim(cpu);
    expect(first.job_id).toBe(cpuJob.job_id);
    // A released task of the low-priority job is re-leased too.
    await json(await update(cpu, first, 'released'), 200);
    expect((await claim(cpu)).task_id).toBe(first.task_id);
  });

  it('a job with tags goes only to nodes that carry every one of them', async () => {
    const plain = await node('plain');
    const studio = await node('studio', { tags: ['studio-a', 'big-ram'] });
    const half = await node('half', { tags: ['studio-a'] });
    const job = await submitOk({ start_frame: 1, end_frame: 1, tags: 'studio-a, big-ram' });
    expect((await jobStatus(job.job_id)).tags).toEqual(['studio-a', 'big-ram']);
    await noWork(plain);
    await noWork(half);
    expect((await claim(studio)).job_id).toBe(job.job_id);
  });

  it('refuses bad placement fields with a clear 400', async () => {
    await expectError(await submitJob({ start_frame: 1, end_frame: 1, device: 'quantum' }), 400, /device must be one of any, cpu, gpu/);
    await expectError(await submitJob({ start_frame: 1, end_frame: 1, tags: 'Bad Tag' }), 400, /tags: a tag is 1 to 40 lowercase/);
    await expectError(await submitJob({ start_frame: 1, end_frame: 3, tiles: 4 }), 400, /tiles splits one frame/);
    await expectError(await submitJob({ start_frame: 1, end_frame: 1, tiles: 65 }), 400, /tiles must be a whole number from 2 to 64/);
    await expectError(await submitJob({ start_frame: 1, end_frame: 1, preview_video: 'maybe' }), 400, /preview_video must be true or false/);
    await expectError(await submitJob({ start_frame: 1, end_frame: 20_000, preview_video: 'true' }), 400, /preview_video is for jobs of at most 10000 frames/);
    await expectError(await postJson('/register_worker', { name: 'n', task_kinds: ['render', 'teleport'] }), 400, /task_kinds: each must be one of/);
  });
});

describe('split stills: tiles, then a stitch', () => {
  it('renders each tile once, stitches once every tile is in, and completes with the stitched frame', async () => {
    const seedNode = await node('seed-node'); // registered no task kinds: renders only
    const a = await node('a', { task_kinds: ['tile', 'stitch'] });
    const job = await submitOk({ start_frame: 7, end_frame: 7, tiles: 3 });
    expect((await jobStatus(job.job_id)).tiles).toBe(3);
    await noWork(seedNode);

    const tiles = [await claim(a), await claim(a), await claim(a)];
    expect(tiles.map((t) => [t.kind, t.tile, t.frames])).toEqual([0, 1, 2].map((i) => ['tile', { index: i, count: 3 }, [7]]));
    await noWork(a);
    // A tile is not a frame, and a completion without the tile is refused.
    await expectError(await putFrame(a, tiles[0]!, 7, pngBytes('tile')), 409, /tile task: it uploads its output/);
    await expectError(await update(a, tiles[0]!, 'completed'), 409, /output was not uploaded/);
    await expectError(await putOutput(a, tiles[0]!, pngBytes('t0'), 'video/mp4'), 415, /Content-Type: image\/png/);
    for (const [i, t] of tiles.entries()) {
      await json(await putOutput(a, t, pngBytes(`tile ${i}`), 'image/png'), 201);
      if (i < 2) await noWork(a); // no stitch before every tile is in
      await json(await update(a, t, 'completed'), 200);
    }

    const stitch = await claim(a);
    expect(stitch).toMatchObject({ kind: 'stitch', frames: [7], tile: { index: 0, count: 3 } });
    for (const i of [0, 1, 2]) {
      const res = await input(a, stitch, i);
      expect(res.headers.get('content-type')).toBe('image/png');
      expect(await sha256(await res.arrayBuffer())).toBe(await sha256(pngBytes(`tile ${i}`)));
    }
    await expectError(await input(a, stitch, 3), 404, /tile 3 of job .* is not stored/);
    expect((await jobStatus(job.job_id)).status).toBe('running');
    await json(await putFrame(a, stitch, 7, pngBytes('stitched')), 201);
    await json(await update(a, stitch, 'completed'), 200);

    const done = await jobStatus(job.job_id);
    expect(done).toMatchObject({ status: 'completed', completed_frames: 1 });
    const frame = await call(`/jobs/${job.job_id}/frames/7`);
    expect(await sha256(await frame.arrayBuffer())).toBe(await sha256(pngBytes('stitched')));
    expect((await tasksOf(job.job_id)).map((t) => [t.kind, t.tile_index, t.status])).toEqual([
      ['tile', 0, 'completed'],
      ['tile', 1, 'completed'],
      ['tile', 2, 'completed'],
      ['stitch', null, 'completed'],
    ]);
  });

  it('a GPU split still is tiled only by GPU nodes, but any node with the kind may stitch it', async () => {
    const cpu = await node('cpu', { task_kinds: ['tile', 'stitch'] });
    const gpu = await node('gpu', { devices: CUDA, task_kinds: ['tile'] });
    await submitOk({ start_frame: 1, end_frame: 1, tiles: 2, device: 'gpu' });
    await noWork(cpu);
    const tiles = [await claim(gpu), await claim(gpu)];
    for (const t of tiles) {
      await json(await putOutput(gpu, t, pngBytes(t.tile!.index), 'image/png'), 201);
      await json(await update(gpu, t, 'completed'), 200);
    }
    await noWork(gpu); // it does not stitch
    expect((await claim(cpu)).kind).toBe('stitch');
  });
});

describe('preview video', () => {
  it('is made once every frame is stored, by a node that runs video tasks, before the job completes', async () => {
    const renderer = await node('renderer');
    const editor = await node('editor', { task_kinds: ['video'] });
    const job = await submitOk({ start_frame: 1, end_frame: 3, chunk_size: 3, preview_video: 'true' });
    expect((await jobStatus(job.job_id)).preview_video).toEqual({ status: 'waiting', url: null, size: null });
    const render = await claim(renderer);
    await renderAll(renderer, render);

    // Every frame is in, but the job waits for its video, which only the editor gets.
    expect((await jobStatus(job.job_id)).status).toBe('running');
    await noWork(renderer);
    const video = await claim(editor);
    expect(video).toMatchObject({ kind: 'video', frames: [1, 2, 3], start_frame: 1, end_frame: 3 });
    expect((await jobStatus(job.job_id)).preview_video!.status).toBe('running');
    const frame2 = await input(editor, video, 2);
    expect(await sha256(await frame2.arrayBuffer())).toBe(await sha256(pngBytes(2)));
    await expectError(await input(editor, video, 4), 400, /frame 4 is not in task/);
    await expectError(await call(`/jobs/${job.job_id}/video`), 404, /not made yet/);

    const mp4 = pngBytes('pretend this is an mp4', 1000);
    await json(await putOutput(editor, video, mp4, 'video/mp4'), 201);
    await json(await update(editor, video, 'completed'), 200);
    const done = await jobStatus(job.job_id);
    expect(done.status).toBe('completed');
    expect(done.preview_video).toEqual({ status: 'completed', url: `/jobs/${job.job_id}/video`, size: mp4.length });
    const res = await call(`/jobs/${job.job_id}/video`);
    expect(res.headers.get('content-type')).toBe('video/mp4');
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect(await sha256(await res.arrayBuffer())).toBe(await sha256(mp4));
    const ranged = await call(`/jobs/${job.job_id}/video`, { headers: { range: 'bytes=0-9' } });
    expect(ranged.status).toBe(206);
    expect((await ranged.arrayBuffer()).byteLength).toBe(10);
  });

  it('a video that cannot be made does not fail the job: it completes with a warning', async () => {
    const editor = await node('editor', { task_kinds: ['video'] });
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2, preview_video: 'true', max_attempts: 1 });
    await renderAll(editor, await claim(editor));
    const video = await claim(editor);
    expect(video.kind).toBe('video');
    await json(await update(editor, video, 'failed', { message: 'ffmpeg: Unknown encoder libx264', failure_reason: 'video_failed' }), 200);
    const done = await jobStatus(job.job_id);
    expect(done).toMatchObject({ status: 'completed', completed_frames: 2, error: null });
    expect(done.warnings).toEqual(['the preview video could not be made: ffmpeg: Unknown encoder libx264']);
    expect(done.preview_video!.status).toBe('failed');
  });

  it('a job without preview_video completes on its last frame, with no video task', async () => {
    const editor = await node('editor', { task_kinds: ['video'] });
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 2 });
    await renderAll(editor, await claim(editor));
    expect((await jobStatus(job.job_id)).status).toBe('completed');
    expect((await tasksOf(job.job_id)).map((t) => t.kind)).toEqual(['render']);
  });
});
