/**
 * D1 schema. Migrations in edge/migrations/ are generated from this file by drizzle-kit
 * (`npm run db:generate`). Times are epoch milliseconds.
 *
 * Jobs carry a frame cursor (`next_frame`): submitting a job inserts one row whatever its length,
 * and tasks (frame ranges) are created only when nodes claim them.
 */
import { sqliteTable, text, integer, index, primaryKey, uniqueIndex } from 'drizzle-orm/sqlite-core';
import type { WebhookState } from '../../protocol/api.ts';
import type { DeviceRequirement, FrameOrder, InputKind, TaskKind, TaskStatus } from '../../protocol/schemas.ts';
import type { StoredJobStatus } from './state-machine.ts';

export const jobs = sqliteTable(
  'jobs',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    /**
     * JOB_STATUSES, or 'deleted': the job answers 404 everywhere while the cron removes its rows and
     * objects page by page (edge/job-deletion.ts).
     */
    status: text('status').$type<StoredJobStatus>().notNull().default('queued'),
    priority: integer('priority').notNull().default(50),
    startFrame: integer('start_frame').notNull(),
    endFrame: integer('end_frame').notNull(),
    /** Frames per task; null lets the scheduler size chunks from measured frame times. */
    chunkSize: integer('chunk_size'),
    /** The first frame no task has covered yet; the job is fully handed out past end_frame. */
    nextFrame: integer('next_frame').notNull(),
    /**
     * A frame list's ranges, JSON `[[start, end, step, first_index], ...]` (edge/frame-ranges.ts);
     * null: every frame from start_frame to end_frame.
     */
    frameRanges: text('frame_ranges'),
    /**
     * FRAME_ORDERS: `sequential` hands frames out in order; `progressive` hands out first, last,
     * middle, then halves, its `next_frame` counting the frames handed out (edge/frame-order.ts).
     */
    frameOrder: text('frame_order').$type<FrameOrder>().notNull().default('sequential'),
    blendFile: text('blend_file').notNull(),
    blendSha256: text('blend_sha256').notNull(),
    blendSize: integer('blend_size').notNull(),
    /** 'blend': blend_file is the .blend; 'zip': a project archive the node unpacks (see blobs). */
    inputKind: text('input_kind').$type<InputKind>().notNull().default('blend'),
    /** For a zip: the .blend to render, relative to the archive root; null: the only top-level one. */
    mainBlend: text('main_blend'),
    maxAttempts: integer('max_attempts').notNull().default(3),
    /** A node that failed this many tasks of the job gets no more of its work. */
    maxNodeFailures: integer('max_node_failures').notNull().default(2),
    /**
     * A task whose lease ran out (its node vanished or lost its link) this many times in a row
     * fails the job: a .blend that kills the machines rendering it (edge/db/state-machine.ts).
     */
    maxNodeLosses: integer('max_node_losses').notNull().default(5),
    completedFrames: integer('completed_frames').notNull().default(0),
    frameTimeMsTotal: integer('frame_time_ms_total').notNull().default(0),
    framesTimed: integer('frames_timed').notNull().default(0),
    error: text('error'),
    /** JSON array of strings: missing textures, libraries and the like. */
    warnings: text('warnings').notNull().default('[]'),
    /** Written by the claim batch to find the range it just carved out (see scheduler). */
    claimToken: text('claim_token'),
    claimStart: integer('claim_start'),
    createdAt: integer('created_at').notNull(),
    updatedAt: integer('updated_at').notNull(),
    startedAt: integer('started_at'),
    finishedAt: integer('finished_at'),
    /** Called with POST when the job completes or fails (see edge/webhooks.ts). */
    webhookUrl: text('webhook_url'),
    /** null (no webhook) | armed (waiting for the job to finish) | sending | delivered | failed. */
    webhookState: text('webhook_state').$type<WebhookState>(),
    webhookAttempts: integer('webhook_attempts').notNull().default(0),
    webhookLastError: text('webhook_last_error'),
    webhookUpdatedAt: integer('webhook_updated_at'),
    webhookDeliveredAt: integer('webhook_delivered_at'),
    /** What the job renders on (DEVICE_REQUIREMENTS): only nodes with a matching backend claim it. */
    device: text('device').$type<DeviceRequirement>().notNull().default('any'),
    /** JSON array of tags: only nodes that carry all of them claim the job. */
    tags: text('tags').notNull().default('[]'),
    /** A split still: its one frame is rendered as this many tile tasks, then one stitch task. */
    tiles: integer('tiles'),
    /** Whether a video task makes an H.264 preview once every frame is stored. */
    previewVideo: integer('preview_video', { mode: 'boolean' }).notNull().default(false),
    /** For a manifest job: bytes of the blobs its submission uploaded (those the master lacked). */
    inputSentBytes: integer('input_sent_bytes'),
  },
  (t) => [
    index('jobs_runnable').on(t.status, t.priority, t.createdAt),
    index('jobs_claim_token').on(t.claimToken),
    // Webhooks due are found among the few jobs whose state is armed or sending.
    index('jobs_webhook_state').on(t.webhookState),
    // Whether any job still uses an input (edge/input-retention.ts, edge/orphan-objects.ts).
    index('jobs_blend_sha256').on(t.blendSha256),
  ],
);

export const tasks = sqliteTable(
  'tasks',
  {
    id: text('id').primaryKey(),
    jobId: text('job_id')
      .notNull()
      .references(() => jobs.id, { onDelete: 'cascade' }),
    startFrame: integer('start_frame').notNull(),
    endFrame: integer('end_frame').notNull(),
    /**
     * The task renders every frame_step-th of the job's frames from start_frame to end_frame (both
     * its own), counted among the job's frames (of a frame list, its listed ones): 1 but for the
     * tasks of a progressive job (edge/frame-order.ts).
     */
    frameStep: integer('frame_step').notNull().default(1),
    /** queued (waiting for a node) | running (leased) | completed | failed (attempts exhausted). */
    status: text('status').$type<TaskStatus>().notNull(),
    workerId: text('worker_id'),
    leaseId: text('lease_id'),
    leaseExpiresAt: integer('lease_expires_at'),
    /** Renders tried: counted when a node is given the task, except after a node loss. */
    attempts: integer('attempts').notNull().default(0),
    /**
     * Leases in a row that ended with their node lost (ran out, or the node restarted): counted
     * when the task is leased again, reset when a lease ends any other way (db/state-machine.ts).
     */
    nodeLosses: integer('node_losses').notNull().default(0),
    /**
     * The lease whose failure report was applied (task-outcomes.ts failTask): the same report
     * again (a retry whose answer was lost, a group commit that re-ran it) changes nothing.
     */
    failedLease: text('failed_lease'),
    /**
     * 1 while the batch that applied `failed_lease`'s failure has yet to count it (the node's
     * blocklist and failure counters), 0 once counted: a batch run twice counts it once.
     */
    failureUncounted: integer('failure_uncounted').notNull().default(0),
    message: text('message'),
    failureReason: text('failure_reason'),
    logTail: text('log_tail'),
    logKey: text('log_key'),
    currentFrame: integer('current_frame'),
    peakMemMb: integer('peak_mem_mb'),
    createdAt: integer('created_at').notNull(),
    updatedAt: integer('updated_at').notNull(),
    /** render | tile | stitch | video (TASK_KINDS). Tiles, stitches and videos are made queued. */
    kind: text('kind').$type<TaskKind>().notNull().default('render'),
    /** Which tile of the job's split still a tile task renders. */
    tileIndex: integer('tile_index'),
    /** What a tile or video task produced (`PUT /tasks/{id}/output`): R2 key, size, SHA-256. */
    outputKey: text('output_key'),
    outputSize: integer('output_size'),
    outputSha256: text('output_sha256'),
  },
  (t) => [
    index('tasks_job').on(t.jobId, t.status),
    index('tasks_job_kind').on(t.jobId, t.kind),
    index('tasks_lease').on(t.leaseId),
    index('tasks_expiry').on(t.status, t.leaseExpiresAt),
  ],
);

export const frames = sqliteTable(
  'frames',
  {
    jobId: text('job_id')
      .notNull()
      .references(() => jobs.id, { onDelete: 'cascade' }),
    frame: integer('frame').notNull(),
    taskId: text('task_id'),
    workerId: text('worker_id'),
    key: text('r2_key').notNull(),
    size: integer('size').notNull(),
    sha256: text('sha256').notNull(),
    contentType: text('content_type').notNull(),
    renderMs: integer('render_ms'),
    createdAt: integer('created_at').notNull(),
    /** R2 key of the small JPEG the node made of this frame for the dashboard (see previews). */
    previewKey: text('preview_key'),
  },
  (t) => [primaryKey({ columns: [t.jobId, t.frame] })],
);

export const workers = sqliteTable(
  'workers',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    hostname: text('hostname'),
    blenderVersion: text('blender_version'),
    threads: integer('threads'),
    /** false once drained/disabled: the node gets no new work. */
    enabled: integer('enabled', { mode: 'boolean' }).notNull().default(true),
    framesRendered: integer('frames_rendered').notNull().default(0),
    failures: integer('failures').notNull().default(0),
    createdAt: integer('created_at').notNull(),
    lastSeenAt: integer('last_seen_at').notNull(),
    /** JSON array of `{type, name}`: the devices the node reported when it registered. */
    devices: text('devices').notNull().default('[]'),
    /**
     * Hex SHA-256 of the node's own credential, issued by `POST /register_worker`. The credential
     * itself is never stored: a copy of this table does not let anyone act as a node.
     */
    credentialHash: text('credential_hash'),
    /** JSON arrays from registration: render backends (`cpu`, `cuda`, ...), tags, and task kinds. */
    backends: text('backends').notNull().default('["cpu"]'),
    tags: text('tags').notNull().default('[]'),
    taskKinds: text('task_kinds').notNull().default('["render"]'),
    /**
     * Random id of the node process's life, sent with each registration: a new one means the
     * process restarted, and what its earlier life held is handed back at once (routes/workers.ts).
     */
    bootId: text('boot_id'),
  },
  (t) => [uniqueIndex('workers_credential').on(t.credentialHash)],
);

/** Nodes that failed a job's tasks too often, per job (Flamenco's blocklist). */
export const jobBlocklist = sqliteTable(
  'job_blocklist',
  {
    jobId: text('job_id')
      .notNull()
      .references(() => jobs.id, { onDelete: 'cascade' }),
    workerId: text('worker_id').notNull(),
    failures: integer('failures').notNull().default(0),
    lastReason: text('last_reason'),
    updatedAt: integer('updated_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.jobId, t.workerId] })],
);

/**
 * Per-credential request counters for the rate limit (see edge/auth.ts): one row per token or
 * node, a window that starts with the first request after the previous one ended.
 */
export const rateLimits = sqliteTable('rate_limits', {
  /** "s:" + a prefix of the submitter token's SHA-256, "e:" for the enrolment token, "n:" + worker id. */
  key: text('key').primaryKey(),
  windowStart: integer('window_start').notNull(),
  count: integer('count').notNull(),
});

/**
 * Files stored by content: the SHA-256 was checked by the master when the upload completed (or
 * when the seed's multipart submit stored the file), so a blob is never uploaded twice.
 */
export const blobs = sqliteTable(
  'blobs',
  {
    sha256: text('sha256').primaryKey(),
    size: integer('size').notNull(),
    /** Where the bytes are in R2 (each upload completes to a key of its own, see storage-keys). */
    key: text('r2_key').notNull(),
    createdAt: integer('created_at').notNull(),
    /**
     * When the last job naming this blob was deleted; with created_at, the start of the retention
     * after which an input no job uses is deleted (edge/input-retention.ts).
     */
    lastUsedAt: integer('last_used_at'),
  },
  // Which row names an object, for the orphaned-object sweep (edge/orphan-objects.ts).
  (t) => [index('blobs_r2_key').on(t.key)],
);

/**
 * Chunked uploads in progress (R2 multipart uploads). One per blob at a time, so a client that
 * starts again, from anywhere, resumes it instead of sending the parts it already sent.
 */
export const blobUploads = sqliteTable(
  'blob_uploads',
  {
    id: text('id').primaryKey(),
    sha256: text('sha256').notNull(),
    size: integer('size').notNull(),
    partSize: integer('part_size').notNull(),
    partCount: integer('part_count').notNull(),
    key: text('r2_key').notNull(),
    r2UploadId: text('r2_upload_id').notNull(),
    createdAt: integer('created_at').notNull(),
    updatedAt: integer('updated_at').notNull(),
  },
  (t) => [uniqueIndex('blob_uploads_sha256').on(t.sha256)],
);

/** Parts R2 has stored for an upload, with the etags that completing it needs. */
export const blobUploadParts = sqliteTable(
  'blob_upload_parts',
  {
    uploadId: text('upload_id')
      .notNull()
      .references(() => blobUploads.id, { onDelete: 'cascade' }),
    partNumber: integer('part_number').notNull(),
    size: integer('size').notNull(),
    etag: text('etag').notNull(),
    createdAt: integer('created_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.uploadId, t.partNumber] })],
);

/**
 * Where a paged cron sweep (edge/cron.ts) stands between runs: the last R2 key it looked at, and
 * when its next pass is due. One row per sweep.
 */
export const sweepCursors = sqliteTable('sweep_cursors', {
  name: text('name').primaryKey(),
  /** The last key handled; null: the sweep is between passes. */
  lastKey: text('last_key'),
  /** Epoch ms before which a sweep between passes starts no new one. */
  nextPassAt: integer('next_pass_at').notNull().default(0),
  updatedAt: integer('updated_at').notNull(),
});

/**
 * Projects stored file by file (protocol/manifest.ts): a manifest is a blob named by the hash of
 * its canonical text; these rows list its files, so the master answers which blobs it lacks, shows
 * a job's files, and keeps every blob a live job's manifest names (edge/input-retention.ts).
 */
export const manifests = sqliteTable('manifests', {
  sha256: text('sha256').primaryKey(),
  mainBlend: text('main_blend').notNull(),
  fileCount: integer('file_count').notNull(),
  totalBytes: integer('total_bytes').notNull(),
  createdAt: integer('created_at').notNull(),
  /** The latest `POST /manifests` of it: blobs stored since were sent by that submission. */
  checkedAt: integer('checked_at').notNull(),
});

export const manifestFiles = sqliteTable(
  'manifest_files',
  {
    manifestSha256: text('manifest_sha256').notNull(),
    path: text('path').notNull(),
    blobSha256: text('blob_sha256').notNull(),
    size: integer('size').notNull(),
  },
  // Whether any manifest still names a blob (edge/input-retention.ts).
  (t) => [primaryKey({ columns: [t.manifestSha256, t.path] }), index('manifest_files_blob').on(t.blobSha256)],
);
