/** Jobs submitted with a frame list (`frames`): only the listed frames are handed out, counted and zipped. */
import { env } from 'cloudflare:workers';
import { unzipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import {
  call,
  claim,
  expectError,
  expectRefusedUnchanged,
  json,
  jobRow,
  pngBytes,
  postJson,
  registerWorker,
  renderAll,
  submitJob,
  submitOk,
  update,
  uploadFrame,
  jobStatus,
  claimAll,
} from './helpers.ts';

describe('a job with frames 1-9x4,12', () => {
  it('hands out exactly frames 1, 5, 9 and 12, counts 4 frames, completes after those four and zips four', async () => {
    const job = await submitOk({ frames: '1-9x4,12', chunk_size: 2, name: 'listed' });
    expect(job.total_frames).toBe(4);
    const worker = await registerWorker();

    const tasks = await claimAll(worker, 20);
    expect(tasks.map((t) => t.frames)).toEqual([
      [1, 5],
      [9, 12],
    ]);
    expect(tasks.map((t) => [t.start_frame, t.end_frame])).toEqual([
      [1, 5],
      [9, 12],
    ]);
    const before = await jobStatus(job.job_id);
    expect(before).toMatchObject({ total_frames: 4, start_frame: 1, end_frame: 12, frames: '1-9x4,12', running_frames: 4, queued_frames: 0 });

    // A frame inside a task's range but not in the list is refused.
    await expectError(await uploadFrame(worker, tasks[0]!, 3, pngBytes(3)), 400, 'frame 3 is not in task');

    await renderAll(worker, tasks[0]!);
    expect(await jobStatus(job.job_id)).toMatchObject({ status: 'running', completed_frames: 2, progress: 0.5 });
    await renderAll(worker, tasks[1]!);
    expect(await jobStatus(job.job_id)).toMatchObject({ status: 'completed', completed_frames: 4, total_frames: 4, progress: 1 });

    const zip = unzipSync(new Uint8Array(await (await call(`/jobs/${job.job_id}/frames.zip`)).arrayBuffer()));
    expect(Object.keys(zip).sort()).toEqual(['frame_000001.png', 'frame_000005.png', 'frame_000009.png', 'frame_000012.png']);
  });

  it('with adaptive chunks, each claim takes the next listed frame', async () => {
    await submitOk({ frames: '12,1-9x4' });
    const worker = await registerWorker();
    const tasks = await claimAll(worker, 20);
    expect(tasks.map((t) => t.frames)).toEqual([[1], [5], [9], [12]]);
  });

  it('a task that reports completed without its listed frames is told which are missing, not the unlisted ones', async () => {
    await submitOk({ frames: '1-9x4', chunk_size: 3 });
    const worker = await registerWorker();
    const task = await claim(worker);
    await json(await uploadFrame(worker, task, 1, pngBytes(1)), 201);
    await expectError(await update(worker, task, 'completed'), 409, 'frame(s) 5, 9 of task');
  });
});

describe('a million-frame list', () => {
  it('is one job row, and a chunk carved across the gap between two ranges takes listed frames only', async () => {
    const job = await submitOk({ frames: '1-500000,600001-1000000', chunk_size: 10_000 });
    expect(job.total_frames).toBe(900_000);
    // Most of the first range handed out already.
    await env.DB.prepare(`UPDATE jobs SET next_frame = 495001 WHERE id = ?`).bind(job.job_id).run();
    const task = await claim(await registerWorker());
    expect(task.frames.length).toBe(10_000);
    expect([task.frames[0], task.frames[4_999], task.frames[5_000], task.frames.at(-1)]).toEqual([495_001, 500_000, 600_001, 605_000]);
    expect(await jobRow(job.job_id)).toMatchObject({ next_frame: 605_001 });
  });
});

describe('POST /jobs with frames', () => {
  it('takes the frame list (the blob is looked up only after the frames are checked)', async () => {
    const sha = 'b'.repeat(64);
    await expectError(await postJson('/jobs', { blob_sha256: sha, kind: 'blend', frames: '1-10x3' }), 404, `no blob ${sha}`);
    await expectError(
      await postJson('/jobs', { blob_sha256: sha, kind: 'blend', frames: '10-1' }),
      400,
      '"10-1" counts down: write the lower frame first (1-10)',
    );
    await expectError(await postJson('/jobs', { blob_sha256: sha, kind: 'blend' }), 400, 'start_frame is required (or frames');
  });
});

describe('bad frame lists get a 400 that says what is wrong', () => {
  const cases: [string, string | number, number, string][] = [
    ['a reversed range', '100-1', 400, '"100-1" counts down: write the lower frame first (1-100)'],
    ['overlapping ranges', '1-10,5-20', 400, '1-10 and 5-20 overlap: list each frame once'],
    ['a repeated frame', '5,5', 400, '5 and 5 overlap'],
    ['a word', 'all', 400, '"all" is not a frame, a range (10-20) or a stepped range (1-100x5)'],
    ['an empty item', '1,,3', 400, 'has an empty item'],
    ['step 0', '1-10x0', 400, 'step 0'],
    ['a frame past the maximum', '1-2000000', 400, 'frame 2000000 in "1-2000000" is outside 0-1048574'],
    ['too many ranges', Array.from({ length: 1001 }, (_, i) => i * 2).join(','), 400, 'over the limit of 1000'],
    ['more frames than MAX_FRAMES_PER_JOB', '0-1000000', 413, 'the job has 1000001 frames, over the limit of 1000000 per job'],
  ];
  it.each(cases)('%s', async (_, frames, code, phrase) => {
    await expectRefusedUnchanged(() => submitJob({ frames }), code, phrase);
  });

  it('tiles need a one-frame job', async () => {
    await expectRefusedUnchanged(() => submitJob({ frames: '1,3', tiles: 4 }), 400, 'tiles splits one frame');
  });
});

describe('frames beside start_frame and end_frame', () => {
  it('frames replaces them; a one-range list is a plain job', async () => {
    const listed = await submitOk({ frames: '3-5', start_frame: 1, end_frame: 100 });
    expect(listed.total_frames).toBe(3);
    expect(await jobRow(listed.job_id)).toMatchObject({ start_frame: 3, end_frame: 5, next_frame: 3, frame_ranges: null });
    expect((await jobStatus(listed.job_id)).frames).toBeNull();
  });
});
