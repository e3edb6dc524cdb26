import { SettingError, wholeNumberSetting } from '../protocol/settings.ts';
import { fail } from './errors.ts';

/** Bindings and variables of the master Worker (see wrangler.toml). */
export interface Env {
  DB: D1Database;
  FILES: R2Bucket;
  /** Wakes render nodes waiting for work (edge/work-signal.ts). */
  WORK_SIGNAL: DurableObjectNamespace<import('./work-signal-object.ts').WorkSignal>;
  /** "true" only in local development: requests need no token. */
  FARM_ALLOW_ANONYMOUS?: string;
  /** Submitter tokens, comma-separated (a Worker secret). */
  FARM_SUBMIT_TOKEN?: string;
  /** Enrolment token for render nodes (a Worker secret). */
  FARM_NODE_TOKEN?: string;
  /** Key that signs webhook calls, HMAC-SHA256 (a Worker secret; see edge/webhooks.ts). */
  FARM_WEBHOOK_SECRET?: string;
  LEASE_MS?: string;
  /** Wall time an adaptive chunk (a job without chunk_size) aims to last, in ms. */
  TARGET_CHUNK_MS?: string;
  /** Most frames in one adaptive chunk. */
  MAX_CHUNK_FRAMES?: string;
  MAX_FRAMES_PER_JOB?: string;
  MAX_UPLOAD_BYTES?: string;
  MAX_JSON_BYTES?: string;
  /** Requests one credential may make per minute; "0" turns the limit off. */
  RATE_LIMIT_PER_MINUTE?: string;
  MAX_ARCHIVE_FILES?: string;
  MAX_ARCHIVE_BYTES?: string;
  BLOB_PART_BYTES?: string;
  MAX_BLOB_BYTES?: string;
  /** Scheduled work (edge/cron.ts, docs/operations.md): hours without a part before an upload is aborted. */
  STALE_UPLOAD_HOURS?: string;
  /** Days an input (.blend or .zip) no job uses is kept before it is deleted. */
  INPUT_RETENTION_DAYS?: string;
  /** Minutes an R2 object no D1 row names is left alone (an upload in flight), before it is deleted. */
  ORPHAN_GRACE_MINUTES?: string;
  /** Hours between the starts of two passes of the orphaned-object sweep over the bucket. */
  ORPHAN_SWEEP_HOURS?: string;
  /** R2 keys per list and delete, and D1 rows per DELETE, when a deleted job is removed (at most 1000). */
  DELETE_PAGE_SIZE?: string;
  /** D1 and R2 calls one cron run may spend removing deleted jobs. */
  DELETE_CALLS_PER_RUN?: string;
}

export interface FarmConfig {
  allowAnonymous: boolean;
  submitTokens: string[];
  nodeToken: string | null;
  /** Signs webhook calls; null: they go out unsigned. */
  webhookSecret: string | null;
  leaseMs: number;
  /** Wall time an adaptive chunk aims for: frames per task = this / the job's mean frame time. */
  targetChunkMs: number;
  /** Most frames one adaptive chunk may have, whatever the measured frame times say. */
  maxChunkFrames: number;
  maxFramesPerJob: number;
  /**
   * Largest body of one upload request (frames, logs, blob parts, the multipart `POST /submit_job`
   * and `POST /upload_result`, all streamed): the plan's request body limit, 100 MB on Free and Pro.
   */
  maxUploadBytes: number;
  maxJsonBytes: number;
  /** Requests per credential (token or node) per minute; 0: no limit. */
  rateLimitPerMinute: number;
  /** Most entries a project .zip may have (checked from its central directory at POST /jobs). */
  maxArchiveFiles: number;
  /** Most bytes a project .zip may unpack to, by the sizes its entries declare. */
  maxArchiveBytes: number;
  /** Bytes per part of a chunked blob upload (all parts but the last); at least 5 MiB (R2). */
  blobPartBytes: number;
  /** Largest blob (a .blend or a project .zip) a chunked upload may create. */
  maxBlobBytes: number;
  /** A chunked upload that received no part for this long is aborted by the cron. */
  staleUploadMs: number;
  /** An input no job uses is deleted this long after it was stored or last used. */
  inputRetentionMs: number;
  /** An R2 object no row names is deleted only once it is this old. */
  orphanGraceMs: number;
  /** A new pass of the orphaned-object sweep starts at most this often. */
  orphanSweepIntervalMs: number;
  /** Keys per R2 list and delete, and rows per D1 DELETE, when removing a deleted job. */
  deletePageSize: number;
  /** D1 and R2 calls one cron run may spend removing deleted jobs. */
  deleteCallsPerRun: number;
}

/**
 * MAX_CHUNK_FRAMES unless set: a task of 100 frames is lost whole when its node dies, and a
 * chunk larger than that gains nothing in Blender start-up time.
 */
export const DEFAULT_MAX_CHUNK_FRAMES = 100;

/** The smallest part R2 takes in a multipart upload (all parts but the last). */
const MIN_BLOB_PART_BYTES = 5 * 1024 * 1024;

/**
 * Reads the configuration from the Worker's vars and secrets, with safe defaults for what is
 * unset. A variable set to something it cannot be (LEASE_MS="60s") is refused: every request
 * answers 500 with an error naming it (docs/operations.md, Configuration), since a master that
 * silently used a default would run otherwise than its operator wrote.
 */
export function readConfig(env: Env): FarmConfig {
  try {
    return parseConfig(env);
  } catch (err) {
    if (err instanceof SettingError) fail(500, `the master's configuration is wrong: ${err.message}; fix the variable and deploy again`);
    throw err;
  }
}

/** The Worker's variables (not its bindings). */
type Variable = { [K in keyof Env]-?: Env[K] extends string | undefined ? K : never }[keyof Env];

function parseConfig(env: Env): FarmConfig {
  const positive = (name: Variable, fallback: number, max?: number) => wholeNumberSetting(name, env[name], fallback, { min: 1, max });
  return {
    // Not an on/off setting: the switch that opens the master opens it only on the exact word,
    // and anything else keeps it closed (a closed master says why on every request).
    allowAnonymous: env.FARM_ALLOW_ANONYMOUS === 'true',
    submitTokens: (env.FARM_SUBMIT_TOKEN ?? '')
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean),
    nodeToken: env.FARM_NODE_TOKEN?.trim() || null,
    webhookSecret: env.FARM_WEBHOOK_SECRET?.trim() || null,
    leaseMs: positive('LEASE_MS', 60_000),
    targetChunkMs: positive('TARGET_CHUNK_MS', 120_000),
    maxChunkFrames: positive('MAX_CHUNK_FRAMES', DEFAULT_MAX_CHUNK_FRAMES),
    maxFramesPerJob: positive('MAX_FRAMES_PER_JOB', 1_000_000),
    maxUploadBytes: positive('MAX_UPLOAD_BYTES', 100 * 1024 * 1024),
    maxJsonBytes: positive('MAX_JSON_BYTES', 256 * 1024),
    // 0 turns the limit off.
    rateLimitPerMinute: wholeNumberSetting('RATE_LIMIT_PER_MINUTE', env.RATE_LIMIT_PER_MINUTE, 600),
    // The same defaults as the node's FARM_PROJECT_MAX_FILES and FARM_PROJECT_MAX_BYTES.
    maxArchiveFiles: positive('MAX_ARCHIVE_FILES', 50_000),
    maxArchiveBytes: positive('MAX_ARCHIVE_BYTES', 20 * 1024 ** 3),
    blobPartBytes: wholeNumberSetting('BLOB_PART_BYTES', env.BLOB_PART_BYTES, 16 * 1024 * 1024, { min: MIN_BLOB_PART_BYTES }),
    maxBlobBytes: positive('MAX_BLOB_BYTES', 50 * 1024 ** 3),
    staleUploadMs: positive('STALE_UPLOAD_HOURS', 24) * 3_600_000,
    inputRetentionMs: positive('INPUT_RETENTION_DAYS', 7) * 86_400_000,
    orphanGraceMs: positive('ORPHAN_GRACE_MINUTES', 60) * 60_000,
    orphanSweepIntervalMs: positive('ORPHAN_SWEEP_HOURS', 24) * 3_600_000,
    // R2 deletes at most 1000 keys per call, and lists at most 1000 per page.
    deletePageSize: positive('DELETE_PAGE_SIZE', 1000, 1000),
    deleteCallsPerRun: positive('DELETE_CALLS_PER_RUN', 16),
  };
}
