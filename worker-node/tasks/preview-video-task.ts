/**
 * A video task: the job's preview. Downloads every rendered frame of the job, encodes them at
 * the scene's frame rate (post/preview-video.ts) and uploads the MP4 as the task's output.
 */
import { join } from 'node:path';
import { TASK_OUTPUT_TYPES } from '../../protocol/schemas.ts';
import { assemblePreviewVideo, type PreviewVideo } from '../post/preview-video.ts';
import { readSceneFps } from '../post/scene-fps.ts';
import { downloadInputs } from './download-inputs.ts';
import type { InputTaskContext } from './input-task.ts';
import { TaskFailure } from './task-failure.ts';

/** Frames wider than this are scaled down: a preview in a browser, not a master copy. */
const PREVIEW_VIDEO_MAX_WIDTH_PX = 1920;

/** Makes and uploads the preview video of the task's frames (every frame of the job). */
export async function previewVideoTask(ctx: InputTaskContext): Promise<string> {
  const { task } = ctx;
  const fps = await readSceneFps(ctx.blender, ctx.blendPath, { signal: ctx.signal });
  ctx.note(`preview video of ${task.frames.length} frame(s) at ${fps.fps}/${fps.fpsBase} fps`);
  const paths = await downloadInputs(ctx, task.frames, { prefix: 'frame_', describe: (n) => `frame ${n}` });
  const outPath = join(ctx.dir, 'preview.mp4');
  let video: PreviewVideo;
  try {
    video = await assemblePreviewVideo({
      frames: task.frames.map((frame) => ({ frame, path: paths.get(frame)! })),
      fps,
      outPath,
      maxWidth: PREVIEW_VIDEO_MAX_WIDTH_PX,
      signal: ctx.signal,
      logPath: ctx.logPath,
    });
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    throw new TaskFailure('video_failed', (err as Error).message, { cause: err });
  }
  await ctx.client.uploadOutput({ workerId: ctx.workerId, taskId: task.task_id, leaseId: task.lease_id, path: outPath, contentType: TASK_OUTPUT_TYPES.video });
  return `made the preview video: ${video.frameCount} frames at ${video.frameRate.text} fps in ${(video.durationMs / 1000).toFixed(1)} s`;
}
