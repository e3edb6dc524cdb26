/** `farm status`'s text: a job of a frame list says which frames it renders, and in what order. */
import { describe, expect, it } from 'vitest';
import { describeStatus } from '../../cli/format.ts';
import type { JobStatusResponse } from '../../protocol/schemas.ts';

const job = (fields: Partial<JobStatusResponse>): JobStatusResponse =>
  ({
    job_id: 'j1',
    name: 'shot',
    status: 'running',
    priority: 0,
    start_frame: 1,
    end_frame: 12,
    chunk_size: null,
    total_frames: 4,
    completed_frames: 1,
    failed_frames: 0,
    running_frames: 1,
    progress: 0.25,
    avg_frame_ms: null,
    eta_seconds: null,
    device: 'any',
    tags: [],
    tiles: null,
    preview_video: null,
    error: null,
    warnings: [],
    ...fields,
  }) as JobStatusResponse;

describe('describeStatus', () => {
  it('names the listed frames and a progressive order', () => {
    const text = describeStatus(job({ frames: '1-9x4,12', order: 'progressive' }));
    expect(text).toMatch(/1\/4 frames \(1-9x4,12, progressive order\)/);
  });

  it('names the range of a plain job, and no order when sequential', () => {
    const text = describeStatus(job({ frames: null, order: 'sequential', total_frames: 12 }));
    expect(text).toMatch(/1\/12 frames \(1-12\)$/m);
  });
});
