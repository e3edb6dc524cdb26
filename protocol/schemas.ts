/**
 * The wire protocol between the master, the render nodes and the CLI: zod schemas and the
 * types inferred from them. Field names are snake_case, as in the seed's API.
 * Nothing here may depend on Workers or Node APIs: both sides import this file.
 */
import { z } from 'zod';

/**
 * Frame numbers a render node can ask Blender for: MAXFRAME is 1,048,574, and the command line
 * reads `-f -5` as "5 before the end", so negative frames cannot be rendered headless.
 */
export const FRAME_MIN = 0;
export const FRAME_MAX = 1_048_574;

const frameNumber = (field: string) =>
  z.coerce
    .number({ error: `${field} must be a number` })
    .refine((n) => Number.isInteger(n), { message: `${field} must be a whole number` })
    .refine((n) => n >= FRAME_MIN && n <= FRAME_MAX, {
      message: `${field} must be between ${FRAME_MIN} and ${FRAME_MAX}`,
    });

const positiveInt = (field: string, max: number) =>
  z.coerce
    .number({ error: `${field} must be a number` })
    .refine((n) => Number.isInteger(n) && n >= 1 && n <= max, {
      message: `${field} must be a whole number from 1 to ${max}`,
    });

/** An id minted by the master (UUID). Checked so that ids never carry path tricks. */
export const idSchema = (field: string) =>
  z.string({ error: `${field} is required` }).regex(/^[0-9a-f-]{36}$/, { message: `${field} is not a valid id` });

export const JOB_STATUSES = ['queued', 'running', 'paused', 'completed', 'failed', 'canceled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export const TASK_STATUSES = ['queued', 'running', 'completed', 'failed'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

/** The text fields of `POST /submit_job` (the file travels beside them). */
export const submitJobFieldsSchema = z
  .object({
    start_frame: frameNumber('start_frame'),
    end_frame: frameNumber('end_frame'),
    chunk_size: positiveInt('chunk_size', 10_000).optional(),
    priority: z.coerce
      .number({ error: 'priority must be a number' })
      .refine((n) => Number.isInteger(n) && n >= 0 && n <= 100, { message: 'priority must be a whole number from 0 to 100' })
      .optional(),
    name: z.string().trim().min(1, { message: 'name must not be empty' }).max(200, { message: 'name is longer than 200 characters' }).optional(),
    max_attempts: positiveInt('max_attempts', 20).optional(),
  })
  .refine((f) => f.start_frame <= f.end_frame, { message: 'start_frame must not be after end_frame', path: ['start_frame'] });
export type SubmitJobFields = z.infer<typeof submitJobFieldsSchema>;

export const submitJobResponseSchema = z.object({
  job_id: z.string(),
  status: z.enum(JOB_STATUSES),
  total_frames: z.number(),
  blend_file: z.string(),
});
export type SubmitJobResponse = z.infer<typeof submitJobResponseSchema>;

export const jobStatusSchema = z.object({
  job_id: z.string(),
  name: z.string(),
  status: z.enum(JOB_STATUSES),
  priority: z.number(),
  start_frame: z.number(),
  end_frame: z.number(),
  chunk_size: z.number().nullable(),
  total_frames: z.number(),
  completed_frames: z.number(),
  failed_frames: z.number(),
  running_frames: z.number(),
  queued_frames: z.number(),
  progress: z.number(),
  blend_file: z.string(),
  blend_sha256: z.string(),
  error: z.string().nullable(),
  warnings: z.array(z.string()),
  created_at: z.string(),
  started_at: z.string().nullable(),
  finished_at: z.string().nullable(),
  avg_frame_ms: z.number().nullable(),
  eta_seconds: z.number().nullable(),
  max_attempts: z.number(),
});
export type JobStatusResponse = z.infer<typeof jobStatusSchema>;

export const registerWorkerSchema = z.object({
  name: z.string({ error: 'name is required' }).trim().min(1, { message: 'name must not be empty' }).max(200, { message: 'name is longer than 200 characters' }),
  hostname: z.string().max(255).optional(),
  blender_version: z.string().max(100).optional(),
  threads: z.number().int().min(0).max(4096).optional(),
  /** A node that restarts sends the id it was given before, so it keeps its identity. */
  worker_id: idSchema('worker_id').optional(),
});
export type RegisterWorkerRequest = z.infer<typeof registerWorkerSchema>;

export const registerWorkerResponseSchema = z.object({
  worker_id: z.string(),
  name: z.string(),
  lease_ms: z.number(),
});
export type RegisterWorkerResponse = z.infer<typeof registerWorkerResponseSchema>;

export const getJobSchema = z.object({
  worker_id: idSchema('worker_id'),
  /** Long poll: wait up to this many ms for work before answering 204. */
  wait_ms: z.number().int().min(0).max(30_000).optional(),
});
export type GetJobRequest = z.infer<typeof getJobSchema>;

/** A claimed task: the frames to render and the lease that fences every later call about it. */
export const taskAssignmentSchema = z.object({
  task_id: z.string(),
  lease_id: z.string(),
  job_id: z.string(),
  job_name: z.string(),
  frames: z.array(z.number()),
  start_frame: z.number(),
  end_frame: z.number(),
  blend_file: z.string(),
  blend_sha256: z.string(),
  blend_size: z.number(),
  lease_expires_at: z.string(),
  lease_ms: z.number(),
  attempt: z.number(),
});
export type TaskAssignment = z.infer<typeof taskAssignmentSchema>;

export const TASK_UPDATE_STATUSES = ['running', 'completed', 'failed', 'released'] as const;

export const updateTaskStatusSchema = z.object({
  worker_id: idSchema('worker_id'),
  task_id: idSchema('task_id'),
  lease_id: idSchema('lease_id'),
  status: z.enum(TASK_UPDATE_STATUSES, { error: `status must be one of ${TASK_UPDATE_STATUSES.join(', ')}` }),
  message: z.string().max(20_000, { message: 'message is longer than 20000 characters' }).optional(),
  /** Why a render failed, from the node's classification of Blender's exit. */
  failure_reason: z.string().max(64).optional(),
  /** Last lines of Blender's output, kept with a failed task. */
  log_tail: z.string().max(64_000).optional(),
  current_frame: frameNumber('current_frame').optional(),
  peak_mem_mb: z.number().min(0).max(10_000_000).optional(),
});
export type UpdateTaskStatusRequest = z.infer<typeof updateTaskStatusSchema>;

export const updateTaskStatusResponseSchema = z.object({
  task_id: z.string(),
  status: z.enum(TASK_STATUSES),
  lease_expires_at: z.string().nullable(),
  /** Set when the job was canceled or paused: the node should stop rendering this task. */
  abort: z.boolean(),
});
export type UpdateTaskStatusResponse = z.infer<typeof updateTaskStatusResponseSchema>;

export const uploadResultFieldsSchema = z.object({
  worker_id: idSchema('worker_id'),
  task_id: idSchema('task_id'),
  lease_id: idSchema('lease_id'),
  frame: frameNumber('frame'),
  render_ms: z.coerce.number().int().min(0).max(1e10).optional(),
});
export type UploadResultFields = z.infer<typeof uploadResultFieldsSchema>;

export const frameInfoSchema = z.object({
  frame: z.number(),
  size: z.number(),
  sha256: z.string(),
  content_type: z.string(),
  file_name: z.string(),
  url: z.string(),
  render_ms: z.number().nullable(),
  worker_id: z.string().nullable(),
});
export type FrameInfo = z.infer<typeof frameInfoSchema>;

export const uploadResultResponseSchema = frameInfoSchema.extend({ job_id: z.string(), completed_frames: z.number() });
export type UploadResultResponse = z.infer<typeof uploadResultResponseSchema>;

export const listJobsQuerySchema = z.object({
  limit: positiveInt('limit', 200).optional(),
  cursor: z.string().max(200).optional(),
  status: z.enum(JOB_STATUSES, { error: `status must be one of ${JOB_STATUSES.join(', ')}` }).optional(),
});

export const listFramesQuerySchema = z.object({
  limit: positiveInt('limit', 10_000).optional(),
  after: frameNumber('after').optional(),
});

export const errorResponseSchema = z.object({ error: z.string() });
export type ErrorResponse = z.infer<typeof errorResponseSchema>;

/** Headers of the raw (streamed) frame and log uploads, which carry no multipart fields. */
export const HEADER_WORKER_ID = 'x-farm-worker-id';
export const HEADER_LEASE_ID = 'x-farm-lease-id';
export const HEADER_SHA256 = 'x-farm-sha256';
export const HEADER_RENDER_MS = 'x-farm-render-ms';

/** File extensions a frame may have; anything else is refused so names stay safe. */
export const FRAME_EXTENSIONS = ['png', 'jpg', 'jpeg', 'exr', 'tif', 'tiff', 'bmp', 'webp', 'hdr', 'tga', 'jp2', 'dpx', 'cin'] as const;

/** `000042` style padding used in stored frame names, like Blender's `######`. */
export function frameFileName(frame: number, ext: string): string {
  const digits = String(Math.abs(frame)).padStart(6, '0');
  return `frame_${frame < 0 ? '-' : ''}${digits}.${ext}`;
}
