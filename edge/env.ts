/** Bindings and variables of the master Worker (see wrangler.toml). */
export interface Env {
  DB: D1Database;
  FILES: R2Bucket;
  /** "true" only in local development: requests need no token. */
  FARM_ALLOW_ANONYMOUS?: string;
  /** Submitter tokens, comma-separated (a Worker secret). */
  FARM_SUBMIT_TOKEN?: string;
  /** Enrolment token for render nodes (a Worker secret). */
  FARM_NODE_TOKEN?: string;
  LEASE_MS?: string;
  MAX_FRAMES_PER_JOB?: string;
  MAX_UPLOAD_BYTES?: string;
  MAX_SUBMIT_BYTES?: string;
  MAX_JSON_BYTES?: string;
}

export interface FarmConfig {
  allowAnonymous: boolean;
  submitTokens: string[];
  nodeToken: string | null;
  leaseMs: number;
  maxFramesPerJob: number;
  /** Largest streamed upload (frames, logs, blobs) in one request. */
  maxUploadBytes: number;
  /** Largest multipart `POST /submit_job`: multipart bodies are buffered whole by workerd. */
  maxSubmitBytes: number;
  maxJsonBytes: number;
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
    maxFramesPerJob: intVar(env.MAX_FRAMES_PER_JOB, 1_000_000),
    maxUploadBytes: intVar(env.MAX_UPLOAD_BYTES, 100 * 1024 * 1024),
    maxSubmitBytes: intVar(env.MAX_SUBMIT_BYTES, 24 * 1024 * 1024),
    maxJsonBytes: intVar(env.MAX_JSON_BYTES, 256 * 1024),
  };
}
