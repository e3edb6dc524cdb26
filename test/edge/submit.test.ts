/** Submitting jobs: the seed's multipart form, the .blend encodings, and huge frame ranges. */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import type { JobStatusResponse, SubmitJobResponse } from '../../protocol/schemas.ts';
import { blendBytes, call, countRows, expectRefusedUnchanged, gzipBlendBytes, json, jobRow, sha256, submitJob, submitOk, zstdBlendBytes } from './helpers.ts';

describe('POST /submit_job', () => {
  it("the seed's curl submission (blend_file, start_frame=1, end_frame=100) queues a 100-frame job and stores the exact .blend", async () => {
    const blend = blendBytes(10_000);
    const res = await submitJob({ start_frame: '1', end_frame: '100' }, blend, 'shot_010.blend');
    const body = await json<SubmitJobResponse>(res, 201);

    expect(body).toMatchObject({ status: 'queued', total_frames: 100 });
    expect(body.job_id).toMatch(/^[0-9a-f-]{36}$/);
    const blendSha = await sha256(blend);
    expect(body.blend_file).toBe(`${blendSha}.blend`);

    const job = await jobRow(body.job_id);
    expect(job).toMatchObject({
      name: 'shot_010',
      status: 'queued',
      start_frame: 1,
      end_frame: 100,
      next_frame: 1,
      blend_sha256: blendSha,
      blend_size: blend.length,
      priority: 50,
      max_attempts: 3,
      chunk_size: null,
    });
    // Stored by hash: what nodes download by the name the answer gave is the exact file.
    const download = await call(`/download_blend/${body.blend_file}`);
    expect(download.status).toBe(200);
    expect(await sha256(await download.arrayBuffer())).toBe(blendSha);
    expect(await env.DB.prepare(`SELECT sha256, size FROM blobs WHERE sha256 = ?`).bind(blendSha).first()).toEqual({ sha256: blendSha, size: blend.length });
  });

  it('the optional fields name, priority, chunk_size and max_attempts are stored as sent', async () => {
    const { job_id } = await submitOk({ start_frame: 5, end_frame: 14, name: 'Hero shot', priority: 80, chunk_size: 3, max_attempts: 5 });
    expect(await jobRow(job_id)).toMatchObject({
      name: 'Hero shot',
      priority: 80,
      chunk_size: 3,
      max_attempts: 5,
      start_frame: 5,
      end_frame: 14,
    });
  });

  it('a gzip-compressed .blend (Blender before 3.0) is accepted', async () => {
    const gz = await gzipBlendBytes();
    expect([gz[0], gz[1]]).toEqual([0x1f, 0x8b]);
    const body = await submitOk({ start_frame: 1, end_frame: 2 }, gz);
    expect(body.blend_file).toBe(`${await sha256(gz)}.blend`);
  });

  it('a zstd-compressed .blend (Blender 3.0 and later) is accepted', async () => {
    const zst = zstdBlendBytes();
    const body = await submitOk({ start_frame: 1, end_frame: 2 }, zst);
    expect(body.blend_file).toBe(`${await sha256(zst)}.blend`);
  });

  it('the same .blend submitted for two jobs is stored once in R2 and both jobs point at it', async () => {
    const blend = blendBytes(2048, 'shared');
    const a = await submitOk({ start_frame: 1, end_frame: 10 }, blend);
    const b = await submitOk({ start_frame: 11, end_frame: 20 }, blend);
    expect(a.blend_file).toBe(b.blend_file);
    expect(await countRows()).toMatchObject({ jobs: 2, r2_objects: 1 });
  });

  it('a job of 1,000,000 frames is one jobs row and no task or frame rows until nodes claim work', async () => {
    const body = await submitOk({ start_frame: 1, end_frame: 1_000_000 });
    expect(body.total_frames).toBe(1_000_000);
    expect(await countRows()).toEqual({ jobs: 1, tasks: 0, frames: 0, workers: 0, job_blocklist: 0, r2_objects: 1 });

    const status = await json<JobStatusResponse>(await call(`/job_status/${body.job_id}`), 200);
    expect(status).toMatchObject({ total_frames: 1_000_000, queued_frames: 1_000_000, completed_frames: 0, status: 'queued' });
  });
});

describe('POST /submit_job streams the file', { timeout: 60_000 }, () => {
  const MiB = 1024 * 1024;

  it('a 26 MiB .blend, over the old 24 MiB cap, is stored in parts and downloads byte for byte by its hash', async () => {
    const blend = blendBytes(26 * MiB + 12_345, 'big');
    const body = await json<SubmitJobResponse>(await submitJob({ start_frame: '1', end_frame: '3' }, blend, 'big.blend'), 201);
    const blendSha = await sha256(blend);
    expect(body).toMatchObject({ status: 'queued', total_frames: 3, blend_file: `${blendSha}.blend` });
    expect(await jobRow(body.job_id)).toMatchObject({ blend_sha256: blendSha, blend_size: blend.length });
    const download = await call(`/download_blend/${body.blend_file}`);
    expect(download.headers.get('content-length')).toBe(String(blend.length));
    expect(await sha256(await download.arrayBuffer())).toBe(blendSha);
    // One object: the one the blobs row names, nothing left of the upload's parts.
    expect(await countRows()).toMatchObject({ jobs: 1, r2_objects: 1 });
  });

  it("curl's order (the file, then the fields): a bad field after a 6 MiB file is a 400 and leaves no object, no job", async () => {
    const form = new FormData();
    form.set('blend_file', new File([blendBytes(6 * MiB, 'then-bad')], 'x.blend'));
    form.set('start_frame', '10');
    form.set('end_frame', '9');
    await expectRefusedUnchanged(() => call('/submit_job', { method: 'POST', body: form }), 400, 'start_frame must not be after end_frame');
    expect((await env.FILES.list()).objects).toEqual([]);
  });

  it('fields before the file are checked before the file is stored: the same mistake, refused the same way', async () => {
    const form = new FormData();
    form.set('start_frame', '1');
    form.set('end_frame', 'abc');
    form.set('blend_file', new File([blendBytes(4096, 'fields-first')], 'x.blend'));
    await expectRefusedUnchanged(() => call('/submit_job', { method: 'POST', body: form }), 400, 'end_frame must be a number');
  });

  it('the fields may come in any order around the file; text fields are read as text, a second file is ignored', async () => {
    const blend = blendBytes(5000, 'order');
    const form = new FormData();
    form.set('name', 'ordered shot');
    form.set('start_frame', '5');
    form.append('blend_file', new File([blend], 'first.blend'));
    form.append('blend_file', new File([blendBytes(5000, 'other')], 'second.blend'));
    form.set('end_frame', '8');
    form.set('priority', '70');
    const body = await json<SubmitJobResponse>(await call('/submit_job', { method: 'POST', body: form }), 201);
    expect(body).toMatchObject({ total_frames: 4, blend_file: `${await sha256(blend)}.blend` });
    expect(await jobRow(body.job_id)).toMatchObject({ name: 'ordered shot', start_frame: 5, end_frame: 8, priority: 70 });
    expect(await countRows()).toMatchObject({ r2_objects: 1 });
  });
});

describe('GET /job_status/{id}', () => {
  it('a fresh job reports all frames queued, nothing done, and the blend it renders', async () => {
    const blend = blendBytes(3000, 'status');
    const { job_id } = await submitOk({ start_frame: 1, end_frame: 100 }, blend);
    const status = await json<JobStatusResponse>(await call(`/job_status/${job_id}`), 200);
    expect(status).toMatchObject({
      job_id,
      status: 'queued',
      start_frame: 1,
      end_frame: 100,
      total_frames: 100,
      completed_frames: 0,
      running_frames: 0,
      failed_frames: 0,
      queued_frames: 100,
      progress: 0,
      blend_sha256: await sha256(blend),
      error: null,
      started_at: null,
      finished_at: null,
    });
    expect(Date.parse(status.created_at)).toBeGreaterThan(Date.now() - 60_000);
    // GET /jobs/{id} is the same answer under the REST-style path.
    expect(await json<JobStatusResponse>(await call(`/jobs/${job_id}`), 200)).toEqual(status);
  });
});
