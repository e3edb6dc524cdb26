/**
 * The people's side of the API: job control, node control, and the answers of the read
 * endpoints that the CLI and the dashboard use. The same schemas validate requests on the master,
 * type the client (protocol/client.ts) and generate `GET /openapi.json` (edge/openapi.ts).
 * Like schemas.ts, nothing here depends on Workers or Node APIs.
 */
import { z } from 'zod';
import { JOB_STATUSES, TASK_KINDS, TASK_STATUSES, deviceSchema, frameInfoSchema, jobStatusSchema, webhookUrlSchema } from './schemas.ts';

const prioritySchema = z
  .number({ error: 'priority must be a number' })
  .int({ message: 'priority must be a whole number from 0 to 100' })
  .min(0, { message: 'priority must be a whole number from 0 to 100' })
  .max(100, { message: 'priority must be a whole number from 0 to 100' })
  .meta({ description: 'Higher runs first; 0-100, new jobs get 50.' });

/** `PATCH /jobs/{job_id}`: change what can change while a job runs. */
export const updateJobSchema = z
  .object({
    priority: prioritySchema.optional(),
    webhook_url: webhookUrlSchema.nullable().optional(),
  })
  .strict()
  .refine((body) => body.priority !== undefined || body.webhook_url !== undefined, {
    message: 'send at least one of priority, webhook_url',
  });
export type UpdateJobRequest = z.infer<typeof updateJobSchema>;

/** `POST /jobs/{job_id}/cancel|pause|resume`: the job after the change. */
export const jobControlResponseSchema = jobStatusSchema.extend({
  /** The status before this request; equal to `status` when the request changed nothing. */
  previous_status: z.enum(JOB_STATUSES),
});
export type JobControlResponse = z.infer<typeof jobControlResponseSchema>;

export const requeueResponseSchema = z.object({
  job_id: z.string(),
  requeued_tasks: z.number(),
  status: z.enum(JOB_STATUSES),
});
export type RequeueResponse = z.infer<typeof requeueResponseSchema>;

export const deleteJobResponseSchema = z.object({
  job_id: z.string(),
  deleted: z.literal(true),
  /**
   * Objects the request itself removed: 0, since the cron removes the job's frames, previews and
   * logs a page at a time (kept for clients of the earlier API). Inputs (.blend, .zip) are shared.
   */
  deleted_objects: z.number(),
});
export type DeleteJobResponse = z.infer<typeof deleteJobResponseSchema>;

export const jobListResponseSchema = z.object({
  jobs: z.array(jobStatusSchema),
  next_cursor: z.string().nullable(),
});
export type JobListResponse = z.infer<typeof jobListResponseSchema>;

const frameListItemSchema = frameInfoSchema.extend({
  /** A small JPEG of the frame for the dashboard, made by the node; null until it is uploaded. */
  preview_url: z.string().nullable(),
});
export type FrameListItem = z.infer<typeof frameListItemSchema>;

export const frameListResponseSchema = z.object({
  job_id: z.string(),
  frames: z.array(frameListItemSchema),
  next_after: z.number().nullable(),
});
export type FrameListResponse = z.infer<typeof frameListResponseSchema>;

const taskInfoSchema = z.object({
  task_id: z.string(),
  id: z.string(),
  start_frame: z.number(),
  end_frame: z.number(),
  /** The task renders every frame_step-th of the job's frames from start_frame to end_frame (protocol/frame-list.ts framesOfTask). */
  frame_step: z.number(),
  status: z.enum(TASK_STATUSES),
  worker_id: z.string().nullable(),
  attempts: z.number(),
  /** Leases in a row that ended with their node lost (ran out, or the node restarted). */
  node_losses: z.number(),
  message: z.string().nullable(),
  failure_reason: z.string().nullable(),
  current_frame: z.number().nullable(),
  peak_mem_mb: z.number().nullable(),
  lease_expires_at: z.string().nullable(),
  /** Epoch milliseconds. */
  created_at: z.number(),
  /** Epoch milliseconds. */
  updated_at: z.number(),
  log_url: z.string().nullable(),
  kind: z.enum(TASK_KINDS),
  /** For a tile task: which tile of the split still. */
  tile_index: z.number().nullable(),
});
export type TaskInfo = z.infer<typeof taskInfoSchema>;

export const taskListResponseSchema = z.object({ job_id: z.string(), tasks: z.array(taskInfoSchema) });
export type TaskListResponse = z.infer<typeof taskListResponseSchema>;

export const blocklistResponseSchema = z.object({
  job_id: z.string(),
  max_node_failures: z.number(),
  nodes: z.array(
    z.object({
      worker_id: z.string(),
      name: z.string().nullable(),
      failures: z.number(),
      last_reason: z.string().nullable(),
      blocked: z.boolean(),
      updated_at: z.string(),
    }),
  ),
});
export type BlocklistResponse = z.infer<typeof blocklistResponseSchema>;

const WEBHOOK_STATES = ['armed', 'sending', 'delivered', 'failed'] as const;
export type WebhookState = (typeof WEBHOOK_STATES)[number];

/** `GET /jobs/{job_id}/webhook`: where the job's notification stands. */
export const webhookStatusSchema = z.object({
  job_id: z.string(),
  webhook_url: z.string().nullable(),
  /** armed: waiting for the job to finish; sending; delivered; failed (every attempt failed). */
  state: z.enum(WEBHOOK_STATES).nullable(),
  attempts: z.number(),
  last_error: z.string().nullable(),
  delivered_at: z.string().nullable(),
  /** Whether calls carry X-Farm-Signature (FARM_WEBHOOK_SECRET is set on the master). */
  signed: z.boolean(),
  /** Set when a deployed master sends unsigned calls: what to configure. */
  warning: z.string().nullable(),
});
export type WebhookStatus = z.infer<typeof webhookStatusSchema>;

/** The body POSTed to a job's webhook. */
export const webhookPayloadSchema = z.object({
  event: z.enum(['job.completed', 'job.failed']),
  /** The same as X-Farm-Delivery: one id per event, the same on every retry (deduplicate on it). */
  delivery_id: z.string(),
  sent_at: z.string(),
  job: jobStatusSchema,
});
export type WebhookPayload = z.infer<typeof webhookPayloadSchema>;

const NODE_STATES = ['rendering', 'idle', 'draining', 'disabled', 'offline'] as const;
export type NodeState = (typeof NODE_STATES)[number];

export const workerInfoSchema = z.object({
  worker_id: z.string(),
  name: z.string(),
  hostname: z.string().nullable(),
  blender_version: z.string().nullable(),
  threads: z.number().nullable(),
  /** false once drained or disabled: the node gets no new work. */
  enabled: z.boolean(),
  /** Heard from within one lease period. */
  online: z.boolean(),
  /**
   * offline: not heard from within a lease; rendering / idle; draining: disabled but finishing
   * its task; disabled: gets no work.
   */
  state: z.enum(NODE_STATES),
  current_task_id: z.string().nullable(),
  current_job_id: z.string().nullable(),
  current_frame: z.number().nullable(),
  devices: z.array(deviceSchema),
  /** What the node's devices render with (`cpu`, `cuda`, `optix`, ...): matched against a job's `device`. */
  backends: z.array(z.string()),
  tags: z.array(z.string()),
  /** Kinds of task it runs: `render`, and `tile`, `stitch`, `video` when it said so. */
  task_kinds: z.array(z.enum(TASK_KINDS)),
  frames_rendered: z.number(),
  failures: z.number(),
  last_seen_at: z.string(),
});
export type WorkerInfo = z.infer<typeof workerInfoSchema>;

export const workerListResponseSchema = z.object({ workers: z.array(workerInfoSchema) });
export type WorkerListResponse = z.infer<typeof workerListResponseSchema>;

/** `POST /workers/{id}/drain|disable|enable`: the node after the change. */
export const workerControlResponseSchema = workerInfoSchema.extend({
  /** Tasks handed back to the queue by this request (disable only). */
  released_tasks: z.number(),
});
export type WorkerControlResponse = z.infer<typeof workerControlResponseSchema>;

/** Largest preview a node may upload; previews are thumbnails, not frames. */
export const MAX_PREVIEW_BYTES = 2 * 1024 * 1024;
/** Width in pixels the node scales previews to (height follows the aspect ratio). */
export const PREVIEW_WIDTH_PX = 320;
