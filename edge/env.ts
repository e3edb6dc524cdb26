/** Bindings and variables of the master Worker (see wrangler.toml). */
export interface Env {
  DB: D1Database;
  FILES: R2Bucket;
  /** Wakes render nodes waiting for work (edge/work-signal.ts). */
  WORK_SIGNAL: DurableObjectNamespace<import('./work-signal.ts').WorkSignal>;
  /** "true" only in local development: requests need no token. */
  FARM_ALLOW_ANONYMOUS?: string;
  /** Submitter tokens, comma-separated (a Worker secret). */
  FARM_SUBMIT_TOKEN?: string;
  /** Enrolment token for render nodes (a Worker secret). */
  FARM_NODE_TOKEN?: string;
  LEASE_MS?: string;
  /** Wall time an adaptive chunk (a job without chunk_size) aims to last, in ms. */
  TARGET_CHUNK_MS?: string;
  MAX_FRAMES_PER_JOB?: string;
  MAX_UPLOAD_BYTES?: string;
  MAX_SUBMIT_BYTES?: string;
  MAX_JSON_BYTES?: string;
  /** Requests one credential may make per minute; "0" turns the limit off. */
  RATE_LIMIT_PER_MINUTE?: string;
  MAX_ARCHIVE_FILES?: string;
  MAX_ARCHIVE_BYTES?: string;
  BLOB_PART_BYTES?: string;
  MAX_BLOB_BYTES?: string;
}

export interface FarmConfig {
  allowAnonymous: boolean;
  submitTokens: string[];
  nodeToken: string | null;
  leaseMs: number;
  /** Wall time an adaptive chunk aims for: frames per task = this / the job's mean frame time. */
  targetChunkMs: number;
  maxFramesPerJob: number;
  /** Largest streamed upload (frames, logs, blobs) in one request. */
  maxUploadBytes: number;
  /** Largest multipart `POST /submit_job`: multipart bodies are buffered whole by workerd. */
  maxSubmitBytes: number;
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
}

function intVar(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value !== undefined && value !== '' && Number.isFinite(n) && n > 0 ? Math.floor(n) : fallback;
}

/** Reads the configuration from the Worker's vars and secrets, with safe defaults. */
export function readConfig(env: Env): FarmConfig {
  return {
    allowAnonymous: env.FARM_ALLOW_ANONYMOUS === 'true',
    submitTokens: (env.FARM_SUBMIT_TOKEN ?? '').split(',').map((t) => t.trim()).filter(Boolean),
    nodeToken: env.FARM_NODE_TOKEN?.trim() || null,
    leaseMs: intVar(env.LEASE_MS, 60_000),
    targetChunkMs: intVar(env.TARGET_CHUNK_MS, 120_000),
    maxFramesPerJob: intVar(env.MAX_FRAMES_PER_JOB, 1_000_000),
    maxUploadBytes: intVar(env.MAX_UPLOAD_BYTES, 100 * 1024 * 1024),
    maxSubmitBytes: intVar(env.MAX_SUBMIT_BYTES, 24 * 1024 * 1024),
    maxJsonBytes: intVar(env.MAX_JSON_BYTES, 256 * 1024),
    rateLimitPerMinute: env.RATE_LIMIT_PER_MINUTE?.trim() === '0' ? 0 : intVar(env.RATE_LIMIT_PER_MINUTE, 600),
    // The same defaults as the node's FARM_PROJECT_MAX_FILES and FARM_PROJECT_MAX_BYTES.
    maxArchiveFiles: intVar(env.MAX_ARCHIVE_FILES, 50_000),
    maxArchiveBytes: intVar(env.MAX_ARCHIVE_BYTES, 20 * 1024 ** 3),
    blobPartBytes: Math.max(5 * 1024 * 1024, intVar(env.BLOB_PART_BYTES, 16 * 1024 * 1024)),
    maxBlobBytes: intVar(env.MAX_BLOB_BYTES, 50 * 1024 ** 3),
  };
}
