/**
 * The wire protocol between the master, the render nodes and the CLI: zod schemas and the
 * types inferred from them. Field names are snake_case, as in the seed's API.
 * Nothing here may depend on Workers or Node APIs: both sides import this file.
 */
import { z } from 'zod';
import { countFrames, FRAME_MAX, FRAME_MIN, parseFrameList, type FrameRange } from './frame-list.ts';

export { FRAME_MAX, FRAME_MIN };

/** The longest long poll a node may ask for (`get_job`'s `wait_ms`), in ms. */
export const MAX_WAIT_MS = 30_000;

const frameNumber = (field: string) =>
  z.coerce
    .number({ error: `${field} must be a number` })
    .refine((n) => Number.isInteger(n), { message: `${field} must be a whole number` })
    .refine((n) => n >= FRAME_MIN && n <= FRAME_MAX, {
      message: `${field} must be between ${FRAME_MIN} and ${FRAME_MAX}`,
    });

const positiveInt = (field: string, max: number) =>
  z.coerce.number({ error: `${field} must be a number` }).refine((n) => Number.isInteger(n) && n >= 1 && n <= max, {
    message: `${field} must be a whole number from 1 to ${max}`,
  });

/** An id minted by the master (UUID). Checked so that ids never carry path tricks. */
const idSchema = (field: string) => z.string({ error: `${field} is required` }).regex(/^[0-9a-f-]{36}$/, { message: `${field} is not a valid id` });

/**
 * Why a name would be unsafe where names become paths (a CLI's output folder, a ZIP entry, a log
 * line): control characters (NUL included), backslashes, a leading "/" or any ".." segment.
 * "shot/010" is a fine name; "../../etc" and "C:\x" are not. Null when the name is fine.
 */
function unsafeName(name: string): string | null {
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'contains a control character (such as NUL or a newline)';
  if (name.includes('\\')) return 'contains a backslash';
  if (name.startsWith('/')) return 'starts with "/" (a name is not a path)';
  if (name.split('/').some((part) => part.trim() === '..')) return 'contains a ".." segment';
  return null;
}

/** A job's or a node's name: trimmed, 1 to `max` characters, and safe (see `unsafeName`). */
const displayName = (field: string, max: number) =>
  z
    .string({ error: `${field} is required` })
    .trim()
    .min(1, { message: `${field} must not be empty` })
    .max(max, { message: `${field} is longer than ${max} characters` })
    .superRefine((name, ctx) => {
      const problem = unsafeName(name);
      if (problem) ctx.addIssue({ code: 'custom', message: `${field} ${problem}` });
    });

export const JOB_STATUSES = ['queued', 'running', 'paused', 'completed', 'failed', 'canceled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export const TASK_STATUSES = ['queued', 'running', 'completed', 'failed'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

/**
 * A webhook target: http(s) only, no credentials in the URL's user part (they would be logged),
 * at most 2000 characters. `null` in a PATCH removes the webhook.
 */
export const webhookUrlSchema = z
  .string({ error: 'webhook_url must be a string' })
  .max(2000, { message: 'webhook_url is longer than 2000 characters' })
  .refine(
    (value) => {
      try {
        const url = new URL(value);
        return (url.protocol === 'http:' || url.protocol === 'https:') && url.username === '' && url.password === '';
      } catch {
        return false;
      }
    },
    { message: 'webhook_url must be an http:// or https:// URL without a user name or password' },
  )
  .meta({ description: 'Called with POST when the job completes or fails (http or https).', format: 'uri' });

// ---------------------------------------------------------------------------------------------
// What a job asks of the node that renders it, and the kinds of task a job can have.

/**
 * A job's device requirement: `any` (the node's best: its GPU if it has one), `cpu`, `gpu` (any
 * GPU backend) or one Cycles backend by name. Only nodes that can meet it are given the job's work.
 */
export const DEVICE_REQUIREMENTS = ['any', 'cpu', 'gpu', 'cuda', 'optix', 'hip', 'oneapi', 'metal'] as const;
export type DeviceRequirement = (typeof DEVICE_REQUIREMENTS)[number];

/**
 * `render`: frames with Blender; `tile`: one tile of a split still (border render); `stitch`:
 * the tiles of a split still put back together into its frame; `video`: the job's H.264 preview.
 * A node says which kinds beside `render` it can run when it registers (`task_kinds`).
 */
export const TASK_KINDS = ['render', 'tile', 'stitch', 'video'] as const;
export type TaskKind = (typeof TASK_KINDS)[number];

/**
 * What a job renders from: one .blend, a project .zip, or a project manifest (its files stored
 * one by one, see protocol/manifest.ts).
 */
const INPUT_KINDS = ['blend', 'zip', 'manifest'] as const;
export type InputKind = (typeof INPUT_KINDS)[number];

/** Tiles a split still may have. */
export const MAX_TILES = 64;
/** A preview video is made of at most this many frames (each is downloaded by one node). */
export const MAX_PREVIEW_VIDEO_FRAMES = 10_000;

const TAG = /^[a-z0-9][a-z0-9_.-]{0,39}$/;
const tagList = (field: string) =>
  z
    .array(z.string().regex(TAG, { message: `${field}: a tag is 1 to 40 lowercase letters, digits, "_", "." or "-", starting with a letter or digit` }))
    .max(16, { message: `${field}: at most 16 tags` });
/** Tags as a JSON array, or (in the seed's form fields) one comma-separated string. */
export const tagsSchema = (field: string) =>
  z.preprocess(
    (v) =>
      typeof v === 'string'
        ? v
            .split(',')
            .map((t) => t.trim())
            .filter((t) => t !== '')
        : v,
    tagList(field),
  );

const deviceRequirementSchema = z
  .enum(DEVICE_REQUIREMENTS, { error: `device must be one of ${DEVICE_REQUIREMENTS.join(', ')}` })
  .meta({ description: 'What the job renders on: any (the default), cpu, gpu, or one backend.' });
const tilesSchema = z.coerce
  .number({ error: 'tiles must be a number' })
  .refine((n) => Number.isInteger(n) && n >= 2 && n <= MAX_TILES, { message: `tiles must be a whole number from 2 to ${MAX_TILES}` })
  .meta({ description: 'Split a one-frame job into this many tiles, rendered by different nodes and stitched.' });
/** A boolean, also as the form field strings "true"/"false"/"1"/"0". */
const formBoolean = (field: string) =>
  z.preprocess((v) => (v === 'true' || v === '1' ? true : v === 'false' || v === '0' ? false : v), z.boolean({ error: `${field} must be true or false` }));

/**
 * The order a job's frames are handed out in: `sequential` (the default), or `progressive`: the
 * first, the last and the middle frame, then the frames halfway between, and so on, so the whole
 * shot is there in rough form early (edge/frame-order.ts).
 */
export const FRAME_ORDERS = ['sequential', 'progressive'] as const;
export type FrameOrder = (typeof FRAME_ORDERS)[number];

/** The job options that are the same in `POST /submit_job` and `POST /jobs`. */
const jobPlacementFields = {
  device: deviceRequirementSchema.optional(),
  tags: tagsSchema('tags').optional().meta({ description: 'Only nodes carrying every one of these tags render the job.' }),
  tiles: tilesSchema.optional(),
  preview_video: formBoolean('preview_video')
    .optional()
    .meta({ description: 'Make an H.264 preview of the frames once they are done (needs a node with ffmpeg).' }),
  order: z
    .enum(FRAME_ORDERS, { error: `order must be one of ${FRAME_ORDERS.join(', ')}` })
    .optional()
    .meta({ description: 'sequential (the default), or progressive: first, last, middle, then halves, so the whole shot renders roughly first.' }),
};

/**
 * `frames`: a frame list (protocol/frame-list.ts), parsed into ranges. When given, it replaces
 * start_frame and end_frame (which may then be left out).
 */
const frameListField = z
  .string({ error: 'frames must be a frame list such as 1-100, 1-100x5 or 1,5,10-20' })
  .transform((text, ctx) => {
    try {
      return parseFrameList(text);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `frames: ${(err as Error).message}` });
      return z.NEVER;
    }
  })
  .meta({ description: 'Frames to render, replacing start_frame/end_frame: 1-100, 1-100x5 (every 5th), 1,5,10-20.' });

interface FrameFields {
  start_frame?: number;
  end_frame?: number;
  frames?: FrameRange[];
}

/** A job's frames as ranges: its `frames` list, else start_frame to end_frame (checked present first). */
export function jobFrameRanges(f: FrameFields): FrameRange[] {
  return f.frames ?? [[f.start_frame!, f.end_frame!, 1]];
}

/** Checks of the frames: a list or a range, counting up. */
function checkFrames(f: FrameFields, ctx: z.RefinementCtx): void {
  if (f.frames) return;
  for (const field of ['start_frame', 'end_frame'] as const) {
    if (f[field] === undefined) {
      ctx.addIssue({ code: 'custom', path: [field], message: `${field} is required (or frames, a frame list such as 1-100x5)` });
      return;
    }
  }
  if (f.start_frame! > f.end_frame!) ctx.addIssue({ code: 'custom', path: ['start_frame'], message: 'start_frame must not be after end_frame' });
}

/** Checks that need the frames: tiles are for one frame, videos for at most so many. */
function checkPlacement(f: FrameFields & { tiles?: number; preview_video?: boolean }, ctx: z.RefinementCtx): void {
  const ranges = jobFrameRanges(f);
  if (f.tiles !== undefined && countFrames(ranges) !== 1) {
    ctx.addIssue({ code: 'custom', path: ['tiles'], message: 'tiles splits one frame: start_frame and end_frame must be the same frame' });
  }
  if (f.preview_video && countFrames(ranges) > MAX_PREVIEW_VIDEO_FRAMES) {
    ctx.addIssue({ code: 'custom', path: ['preview_video'], message: `preview_video is for jobs of at most ${MAX_PREVIEW_VIDEO_FRAMES} frames` });
  }
}

/** max_node_losses of a job submitted without it. */
export const DEFAULT_MAX_NODE_LOSSES = 5;

/**
 * Times in a row a task's node may be lost (its lease ran out, or it restarted mid-task) before
 * the job fails: a lost node is not a failed render and uses none of `max_attempts`.
 */
const maxNodeLossesSchema = positiveInt('max_node_losses', 100).meta({
  description: `Times in a row the node rendering a task may vanish (lease ran out, node restarted) before the job fails; default ${DEFAULT_MAX_NODE_LOSSES}.`,
});

/** The text fields of `POST /submit_job` (the file travels beside them). */
export const submitJobFieldsSchema = z
  .object({
    start_frame: frameNumber('start_frame').optional(),
    end_frame: frameNumber('end_frame').optional(),
    frames: frameListField.optional(),
    chunk_size: positiveInt('chunk_size', 10_000).optional(),
    priority: z.coerce
      .number({ error: 'priority must be a number' })
      .refine((n) => Number.isInteger(n) && n >= 0 && n <= 100, { message: 'priority must be a whole number from 0 to 100' })
      .optional(),
    name: displayName('name', 200).optional(),
    max_attempts: positiveInt('max_attempts', 20).optional(),
    max_node_losses: maxNodeLossesSchema.optional(),
    webhook_url: webhookUrlSchema.optional(),
    ...jobPlacementFields,
  })
  .superRefine(checkFrames)
  .superRefine(checkPlacement);

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
  /** The frame list the job was submitted with (`1-9x4,12`); null: every frame from start_frame to end_frame. */
  frames: z.string().nullable().optional(),
  /** The order its frames are handed out in. */
  order: z.enum(FRAME_ORDERS).optional(),
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
  /**
   * Why the job failed, as the node classified Blender's exit: corrupt_file, newer_blender,
   * no_camera, out_of_memory, killed, crashed, missing_output, lease_expired, ...; null unless failed.
   */
  failure_reason: z.string().nullable(),
  /** Missing textures, libraries and the like: the frames rendered, but not as intended. */
  warnings: z.array(z.string()),
  created_at: z.string(),
  started_at: z.string().nullable(),
  finished_at: z.string().nullable(),
  avg_frame_ms: z.number().nullable(),
  eta_seconds: z.number().nullable(),
  max_attempts: z.number(),
  /** A task whose node was lost (its lease ran out, or it restarted) this many times in a row fails the job. */
  max_node_losses: z.number(),
  device: z.enum(DEVICE_REQUIREMENTS),
  tags: z.array(z.string()),
  /** Tiles of a split still; null for a job rendered whole. */
  tiles: z.number().nullable(),
  /** The job's preview video: null unless asked for; `url` once a node has made it. */
  preview_video: z.object({ status: z.enum(['waiting', ...TASK_STATUSES]), url: z.string().nullable(), size: z.number().nullable() }).nullable(),
  /**
   * The job's inputs (only in `GET /jobs/{id}` and `GET /job_status/{id}`): its files, their bytes, and the bytes its
   * submission actually sent (blobs the master lacked; null where not measured: blend, zip).
   */
  inputs: z
    .object({
      kind: z.enum(INPUT_KINDS),
      files: z.array(z.object({ path: z.string(), sha256: z.string(), size: z.number() })),
      total_bytes: z.number(),
      sent_bytes: z.number().nullable(),
    })
    .optional(),
});
export type JobStatusResponse = z.infer<typeof jobStatusSchema>;

/** A compute device a node reports: `CPU`, or a GPU backend (`CUDA`, `OPTIX`, `HIP`, `METAL`, `ONEAPI`) and its name. */
export const deviceSchema = z.object({
  type: z.string().max(20, { message: 'device type is longer than 20 characters' }),
  name: z.string().max(200, { message: 'device name is longer than 200 characters' }),
});
export type Device = z.infer<typeof deviceSchema>;

export const registerWorkerSchema = z.object({
  name: displayName('name', 200),
  hostname: z.string().max(255).optional(),
  blender_version: z.string().max(100).optional(),
  threads: z.number().int().min(0).max(4096).optional(),
  /** A node that restarts sends the id it was given before, so it keeps its identity. */
  worker_id: idSchema('worker_id').optional(),
  /**
   * Random, new at each start of the node's process (the same for all its render slots): a
   * known node registering with a new one restarted, and the tasks its earlier life held are
   * handed back at once instead of when their leases run out. Optional (the seed's curl).
   */
  boot_id: idSchema('boot_id').optional(),
  /** What the node can render with, shown in the node list. */
  devices: z.array(deviceSchema).max(64, { message: 'at most 64 devices' }).optional(),
  /** Jobs with tags go only to nodes that carry all of them. */
  tags: tagsSchema('tags').optional(),
  /** The task kinds beside `render` this node runs (`video` only where ffmpeg is installed). */
  task_kinds: z
    .array(z.enum(TASK_KINDS, { error: `task_kinds: each must be one of ${TASK_KINDS.join(', ')}` }))
    .max(TASK_KINDS.length)
    .optional(),
});
export type RegisterWorkerRequest = z.infer<typeof registerWorkerSchema>;

export const registerWorkerResponseSchema = z.object({
  worker_id: z.string(),
  name: z.string(),
  lease_ms: z.number(),
  /**
   * The node's own credential, sent only when one was issued (an enrolment): every later call
   * sends it as `Authorization: Bearer <node_token>`. The master keeps only its hash.
   */
  node_token: z.string().optional(),
});
export type RegisterWorkerResponse = z.infer<typeof registerWorkerResponseSchema>;

export const getJobSchema = z.object({
  worker_id: idSchema('worker_id'),
  /** Long poll: wait up to this many ms for work before answering 204. */
  wait_ms: z.number().int().min(0).max(MAX_WAIT_MS).optional(),
  /**
   * A fresh id per request for work, the same on every retry of it: a retry whose first try was
   * answered with a claim that got lost on the way gets that claim again (it becomes the lease id).
   */
  claim_id: idSchema('claim_id').optional(),
});

/**
 * A claimed task: the frames to render and the lease that fences every later call about it.
 * The node validates it with this schema before use: ids and names become paths on the node's
 * disk and numbers go on Blender's command line, so each is checked for its exact shape.
 */
const frameOnNode = z.number().int().min(FRAME_MIN).max(FRAME_MAX);
export const taskAssignmentSchema = z.object({
  task_id: idSchema('task_id'),
  lease_id: idSchema('lease_id'),
  job_id: idSchema('job_id'),
  job_name: z.string().max(1000),
  frames: z.array(frameOnNode).min(1).max(100_000),
  start_frame: frameOnNode,
  end_frame: frameOnNode,
  blend_file: z.string().regex(/^[0-9a-f]{64}\.(blend|zip|manifest)$/, { message: 'blend_file must be <sha256>.blend, <sha256>.zip or <sha256>.manifest' }),
  blend_sha256: z.string().regex(/^[0-9a-f]{64}$/, { message: 'blend_sha256 must be a hex SHA-256' }),
  blend_size: z.number().int().min(0),
  /**
   * `blend`: blend_file is the .blend to render; `zip`: a project archive to unpack first;
   * `manifest`: a project stored file by file (protocol/manifest.ts), laid out from the node's cache.
   */
  input_kind: z.enum(INPUT_KINDS).default('blend'),
  /** For a zip: the .blend to render, relative to the archive's root; null: the only top-level .blend. */
  main_blend: z.string().nullable().default(null),
  lease_expires_at: z.string(),
  lease_ms: z.number().int().min(1),
  attempt: z.number().int().min(0).max(1_000_000),
  /** What to do (see TASK_KINDS); a node that registered no `task_kinds` is only given `render`. */
  kind: z.enum(TASK_KINDS).default('render'),
  /** The job's device requirement, which the node meets with its best matching backend. */
  device: z.enum(DEVICE_REQUIREMENTS).default('any'),
  /**
   * For `tile`: which tile of how many (the node computes the tile's pixels from the scene's
   * resolution, see worker-node/blender/tile-border.ts). For `stitch`: `index` 0 and the count;
   * the tiles are its inputs, `GET /tasks/{task_id}/inputs/{index}`.
   */
  tile: z
    .object({
      index: z
        .number()
        .int()
        .min(0)
        .max(MAX_TILES - 1),
      count: z.number().int().min(2).max(MAX_TILES),
    })
    .nullable()
    .default(null),
});
export type TaskAssignment = z.infer<typeof taskAssignmentSchema>;

const TASK_UPDATE_STATUSES = ['running', 'completed', 'failed', 'released'] as const;
/** Limits of `warnings` in one `update_task_status`. */
const MAX_WARNINGS_PER_UPDATE = 50;
const MAX_WARNING_LENGTH = 1000;

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
  /** Problems that do not stop a render (a missing texture or library), shown on the job. */
  warnings: z
    .array(
      z
        .string()
        .min(1, { message: 'a warning must not be empty' })
        .max(MAX_WARNING_LENGTH, { message: `a warning is longer than ${MAX_WARNING_LENGTH} characters` }),
    )
    .max(MAX_WARNINGS_PER_UPDATE, { message: `at most ${MAX_WARNINGS_PER_UPDATE} warnings per update` })
    .optional(),
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

/** Headers of the raw (streamed) frame and log uploads, which carry no multipart fields. */
export const HEADER_WORKER_ID = 'x-farm-worker-id';
export const HEADER_LEASE_ID = 'x-farm-lease-id';
export const HEADER_SHA256 = 'x-farm-sha256';
export const HEADER_RENDER_MS = 'x-farm-render-ms';

/** Content types of a task's output (`PUT /tasks/{task_id}/output`): a tile's PNG, a preview's MP4. */
export const TASK_OUTPUT_TYPES = { tile: 'image/png', video: 'video/mp4' } as const;

/** File extensions a frame may have, with the content type the master stores and serves it as; anything else is refused so names stay safe. */
export const FRAME_CONTENT_TYPES = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  exr: 'image/x-exr',
  tif: 'image/tiff',
  tiff: 'image/tiff',
  bmp: 'image/bmp',
  webp: 'image/webp',
  hdr: 'image/vnd.radiance',
  tga: 'image/x-tga',
  jp2: 'image/jp2',
  dpx: 'image/x-dpx',
  cin: 'image/x-cineon',
} as const;
export const FRAME_EXTENSIONS = Object.keys(FRAME_CONTENT_TYPES) as (keyof typeof FRAME_CONTENT_TYPES)[];

/** `000042` style padding used in stored frame names, like Blender's `######`. */
export function frameFileName(frame: number, ext: string): string {
  const digits = String(Math.abs(frame)).padStart(6, '0');
  return `frame_${frame < 0 ? '-' : ''}${digits}.${ext}`;
}

// ---------------------------------------------------------------------------------------------
// Blobs: content-addressed files (a .blend or a project .zip) uploaded in parts, and jobs that
// reference them. See docs/api.md, "Blob endpoints".

export const SHA256_HEX = /^[0-9a-f]{64}$/;
export const sha256Schema = (field: string) =>
  z.string({ error: `${field} is required` }).regex(SHA256_HEX, { message: `${field} must be a SHA-256 in lowercase hex (64 characters)` });

/** R2 refuses parts under 5 MiB (all but the last) and uploads of more than 10,000 parts. */
export const MIN_PART_BYTES = 5 * 1024 * 1024;
export const MAX_PARTS = 10_000;

/** What the master knows of a stored blob (`GET /blobs/{sha256}?info`, `POST .../complete`). */
export const blobInfoSchema = z.object({ sha256: z.string(), size: z.number() });
export type BlobInfo = z.infer<typeof blobInfoSchema>;

/** `POST /blobs/{sha256}/uploads`: start an upload, or resume the one already in progress. */
export const startUploadSchema = z.object({
  size: z
    .number({ error: 'size must be a number' })
    .int({ message: 'size must be a whole number of bytes' })
    .min(1, { message: 'size must be at least 1 byte' }),
  /** Preferred bytes per part; the master clamps it. A resumed upload keeps its own. */
  part_size: z
    .number()
    .int()
    .min(MIN_PART_BYTES, { message: `part_size must be at least ${MIN_PART_BYTES} bytes (R2's minimum)` })
    .optional(),
});

/**
 * An upload in progress. Parts are numbered from 1; every part is `part_size` bytes but the last.
 * `parts_done` lists the parts the master already holds, so a client resumes with the others.
 * `blob_exists`: the master has this blob already and nothing needs to be sent (upload_id null).
 */
export const uploadStateSchema = z.object({
  sha256: z.string(),
  size: z.number(),
  upload_id: z.string().nullable(),
  part_size: z.number(),
  part_count: z.number(),
  parts_done: z.array(z.number()),
  blob_exists: z.boolean(),
});
export type UploadState = z.infer<typeof uploadStateSchema>;

export const uploadPartResponseSchema = z.object({ part_number: z.number(), size: z.number() });

/**
 * A path inside a project archive: relative, `/`-separated, no `.`/`..` segments, no drive
 * letters or backslashes. The node checks again before it touches its disk.
 */
export function unsafeRelativePath(path: string): string | null {
  if (path.length === 0) return 'is empty';
  if (path.length > 1024) return 'is longer than 1024 characters';
  if (path.includes('\\')) return 'contains a backslash (use / between folders)';
  // A newline or escape in a file name forges log lines and breaks tools that read lists of paths.
  if (/[\u0000-\u001f\u007f]/.test(path)) return 'contains a control character (such as NUL or a newline)';
  if (path.startsWith('/') || /^[a-zA-Z]:/.test(path)) return 'is absolute (it must be relative to the archive root)';
  const parts = path.split('/');
  if (parts.some((p) => p === '..')) return 'goes up with ".." (it must stay inside the archive)';
  if (parts.some((p) => p === '' || p === '.')) return 'has an empty or "." segment';
  return null;
}

/** `POST /jobs`: a job whose input is an uploaded blob. */
export const createJobSchema = z
  .object({
    blob_sha256: sha256Schema('blob_sha256'),
    kind: z.enum(INPUT_KINDS, { error: `kind must be one of ${INPUT_KINDS.join(', ')}` }),
    main_blend: z
      .string()
      .superRefine((p, ctx) => {
        const problem = unsafeRelativePath(p);
        if (problem) ctx.addIssue({ code: 'custom', message: `main_blend ${problem}` });
        else if (!/\.blend$/i.test(p)) ctx.addIssue({ code: 'custom', message: 'main_blend must name a .blend file' });
      })
      .optional(),
    start_frame: frameNumber('start_frame').optional(),
    end_frame: frameNumber('end_frame').optional(),
    frames: frameListField.optional(),
    chunk_size: positiveInt('chunk_size', 10_000).optional(),
    priority: z
      .number({ error: 'priority must be a number' })
      .refine((n) => Number.isInteger(n) && n >= 0 && n <= 100, { message: 'priority must be a whole number from 0 to 100' })
      .optional(),
    name: displayName('name', 200).optional(),
    max_attempts: positiveInt('max_attempts', 20).optional(),
    max_node_losses: maxNodeLossesSchema.optional(),
    /** Shown with the job's status: e.g. the files `farm submit` could not find. */
    warnings: z.array(z.string().max(1000)).max(200, { message: 'at most 200 warnings' }).optional(),
    webhook_url: webhookUrlSchema.optional(),
    ...jobPlacementFields,
  })
  .strict()
  .superRefine(checkFrames)
  .refine((f) => f.kind === 'zip' || f.main_blend === undefined, {
    message: 'main_blend is only for kind "zip" (a manifest names its own)',
    path: ['main_blend'],
  })
  .superRefine(checkPlacement);
export type CreateJobRequest = z.infer<typeof createJobSchema>;
/** A `POST /jobs` body as a client writes it (`frames` as text, before parsing). */
export type CreateJobBody = z.input<typeof createJobSchema>;
