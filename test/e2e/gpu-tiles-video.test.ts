/**
 * GPU placement, split stills and preview videos end to end: the real master (wrangler dev),
 * two real render nodes on this GPU-less machine, real Blender and ffmpeg. A job that needs a
 * GPU waits while others run; a one-frame job split into 4 tiles comes back stitched, equal to
 * one whole render; an animation asked with a preview video gets an H.264 MP4 of all its frames.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { splitStillExpr } from '../../worker-node/blender/tile-border.ts';
import { BLENDER, jobStatus, makeScene, startMaster, startNode, submitJob, tempDir, waitFor, waitForJob, type Master, type RenderNode } from './harness.ts';
import { decodePng } from './png.ts';

const execFileAsync = promisify(execFile);

interface TaskRow {
  task_id: string;
  kind: string;
  status: string;
  worker_id: string | null;
  tile_index: number | null;
}

describe('GPU placement, split stills and preview videos', () => {
  const dir = tempDir('e2e-gpu-tiles-video');
  const still = join(dir, 'still.blend');
  const anim = join(dir, 'anim.blend');
  let master: Master;
  const nodes: RenderNode[] = [];
  const jobs: { gpu?: string; tiled?: string; video?: string } = {};
  let reference: Promise<unknown>;

  beforeAll(async () => {
    makeScene('make_still_scene.py', [still, '--width', '48', '--height', '36', '--samples', '4']);
    // Six frames of a tiny still scene: cheap to render, enough for a video to count.
    makeScene('make_still_scene.py', [anim, '--width', '32', '--height', '24', '--samples', '1', '--frames', '6', '--fps', '25']);
    // The reference for the split still: plain Blender, one process, the whole frame (Cycles on
    // the CPU, no denoiser), rendered while the master starts.
    reference = execFileAsync(BLENDER, ['-b', still, '--python-expr', splitStillExpr, '-o', join(dir, 'whole_#'), '-f', '1']);
    master = await startMaster({ name: 'gpu-tiles-video' });
    // alpha renders in a hot Blender, beta one Blender process per task; tiles are cold on both.
    nodes.push(startNode({ name: 'alpha', master: master.url }), startNode({ name: 'beta', master: master.url, args: ['--no-hot'] }));

    // The GPU job first: it must not hold up the jobs after it on a farm without a GPU.
    jobs.gpu = (await submitJob(master.url, new Blob([readFileSync(still)]), { start_frame: 1, end_frame: 1, device: 'gpu', name: 'needs-a-gpu' })).job_id;
    jobs.tiled = (await submitJob(master.url, new Blob([readFileSync(still)]), { start_frame: 1, end_frame: 1, tiles: 4, name: 'split-still' })).job_id;
    jobs.video = (
      await submitJob(master.url, new Blob([readFileSync(anim)]), { start_frame: 1, end_frame: 6, preview_video: 'true', name: 'with-video' })
    ).job_id;
  }, 120_000);

  const tasksOf = async (jobId: string) => ((await (await fetch(`${master.url}/jobs/${jobId}/tasks`)).json()) as { tasks: TaskRow[] }).tasks;

  it('a one-frame job in 4 tiles: 4 tile tasks and a stitch task, and the stitched frame equals one whole render pixel for pixel', async () => {
    const status = await waitForJob(master.url, jobs.tiled!, ['completed', 'failed'], 120_000);
    expect(status, JSON.stringify(status)).toMatchObject({ status: 'completed', tiles: 4, completed_frames: 1 });

    const tasks = await tasksOf(jobs.tiled!);
    expect(
      tasks
        .filter((t) => t.kind === 'tile')
        .map((t) => t.tile_index)
        .sort(),
    ).toEqual([0, 1, 2, 3]);
    expect(tasks.filter((t) => t.kind === 'stitch')).toHaveLength(1);
    expect(tasks.every((t) => t.status === 'completed')).toBe(true);

    const response = await fetch(`${master.url}/jobs/${jobs.tiled}/frames/1`);
    expect(response.status).toBe(200);
    const farm = decodePng(Buffer.from(await response.arrayBuffer()));

    await reference;
    const whole = decodePng(readFileSync(join(dir, 'whole_1.png')));
    expect([farm.width, farm.height]).toEqual([48, 36]);
    expect(farm.pixelHash).toBe(whole.pixelHash);
  });

  it('a 6-frame job with preview_video gets an H.264 MP4 of its 6 frames', async () => {
    const status = await waitForJob(master.url, jobs.video!, ['completed', 'failed'], 120_000);
    expect(status.status, JSON.stringify(status)).toBe('completed');
    const withVideo = await waitFor(
      'the preview video',
      async () => {
        const s = await jobStatus(master.url, jobs.video!);
        if (s.preview_video?.status === 'failed') throw new Error(`the video task failed: ${JSON.stringify(s)}`);
        return s.preview_video?.status === 'completed' ? s : null;
      },
      60_000,
    );
    expect(withVideo.preview_video).toMatchObject({ status: 'completed', url: expect.any(String) });
    expect((await tasksOf(jobs.video!)).filter((t) => t.kind === 'video')).toHaveLength(1);

    const response = await fetch(`${master.url}/jobs/${jobs.video}/video`);
    expect(response.status).toBe(200);
    const mp4 = join(dir, 'preview.mp4');
    writeFileSync(mp4, Buffer.from(await response.arrayBuffer()));
    const probe = async (entries: string) =>
      (
        await execFileAsync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', `stream=${entries}`, '-of', 'csv=p=0', mp4])
      ).stdout.trim();
    expect(await probe('nb_read_frames')).toBe('6');
    expect(await probe('codec_name')).toBe('h264');
  });

  it('a job that needs a GPU is never claimed on a farm without one, and the nodes list only a CPU', async () => {
    // Submitted first, it has waited while both jobs above were rendered.
    const status = await jobStatus(master.url, jobs.gpu!);
    expect(status).toMatchObject({ status: 'queued', device: 'gpu', completed_frames: 0 });
    const tasks = await tasksOf(jobs.gpu!);
    expect(
      tasks.every((t) => t.status === 'queued' && t.worker_id === null),
      JSON.stringify(tasks),
    ).toBe(true);

    const { workers } = (await (await fetch(`${master.url}/workers`)).json()) as {
      workers: { name: string; devices: { type: string }[]; task_kinds: string[] }[];
    };
    expect(workers.map((w) => w.name).sort()).toEqual(['alpha', 'beta']);
    for (const worker of workers) {
      expect(worker.devices.map((d) => d.type)).toEqual(['CPU']);
      expect([...worker.task_kinds].sort()).toEqual(['render', 'stitch', 'tile', 'video']);
    }
  });
});
