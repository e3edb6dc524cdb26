/**
 * A typed client of the master's API for people's tools (the `farm` CLI, scripts, tests), built on
 * `fetch` only, so it runs in Node, browsers and Workers alike. Every answer is checked against
 * the same zod schema the master's OpenAPI document is generated from, so a master and a client
 * that disagree fail loudly here rather than later with an `undefined`.
 *
 * Reads are retried on network errors, 5xx, 408 and 429 (honouring Retry-After); a request that
 * changes something is retried only on 429, which the master sends before doing anything.
 */
import type { z } from 'zod';
import {
  blocklistResponseSchema,
  deleteJobResponseSchema,
  frameListResponseSchema,
  jobControlResponseSchema,
  jobListResponseSchema,
  requeueResponseSchema,
  taskListResponseSchema,
  webhookStatusSchema,
  workerControlResponseSchema,
  workerListResponseSchema,
  type BlocklistResponse,
  type DeleteJobResponse,
  type FrameListItem,
  type FrameListResponse,
  type JobControlResponse,
  type JobListResponse,
  type RequeueResponse,
  type TaskListResponse,
  type UpdateJobRequest,
  type WebhookStatus,
  type WorkerControlResponse,
  type WorkerListResponse,
} from './api.ts';
import { jobStatusSchema, type JobStatus, type JobStatusResponse } from './schemas.ts';

/**
 * A request the master refused (status 400-599), or could not be reached (status null).
 * `message` is the master's own `error` text where it sent one.
 */
export class FarmApiError extends Error {
  readonly status: number | null;
  readonly method: string;
  readonly path: string;
  constructor(status: number | null, method: string, path: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FarmApiError';
    this.status = status;
    this.method = method;
    this.path = path;
  }
}

export interface FarmClientOptions {
  /** The master, e.g. `http://localhost:8000`. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer`; not needed by a master in anonymous mode. */
  token?: string;
  fetch?: typeof fetch;
  /** Tries after the first for retryable failures (default 4). */
  retries?: number;
  /** The first backoff; it doubles per try (default 500 ms). */
  retryDelayMs?: number;
  onRetry?: (what: string, error: FarmApiError, delayMs: number) => void;
}

type Query = Record<string, string | number | undefined>;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class FarmClient {
  readonly baseUrl: string;
  private readonly token: string | undefined;
  private readonly fetcher: typeof fetch;
  private readonly retries: number;
  private readonly retryDelayMs: number;
  private readonly onRetry: FarmClientOptions['onRetry'];

  constructor(options: FarmClientOptions) {
    let url: URL;
    try {
      url = new URL(options.baseUrl);
    } catch {
      throw new FarmApiError(null, 'GET', '/', `the master URL "${options.baseUrl}" is not a URL: pass --master http://host:8000 or set FARM_MASTER_URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new FarmApiError(null, 'GET', '/', `the master URL must start with http:// or https:// (got ${url.protocol})`);
    }
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.token = options.token || undefined;
    this.fetcher = options.fetch ?? ((input, init) => fetch(input, init));
    this.retries = options.retries ?? 4;
    this.retryDelayMs = options.retryDelayMs ?? 500;
    this.onRetry = options.onRetry;
  }

  /** The full URL of an API path (with the query string), e.g. for a browser. */
  url(path: string, query: Query = {}): string {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
    const qs = params.toString();
    return `${this.baseUrl}${path}${qs ? `?${qs}` : ''}`;
  }

  /**
   * One request with retries; answers the raw Response (status < 400). Errors become
   * FarmApiError with the master's message.
   */
  async request(method: string, path: string, init: { query?: Query; body?: unknown; signal?: AbortSignal } = {}): Promise<Response> {
    const idempotent = method === 'GET' || method === 'HEAD';
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (init.body !== undefined) headers['content-type'] = 'application/json';
    for (let attempt = 0; ; attempt++) {
      let error: FarmApiError;
      let retryAfterMs: number | null = null;
      try {
        const response = await this.fetcher(this.url(path, init.query), {
          method,
          headers,
          body: init.body === undefined ? undefined : JSON.stringify(init.body),
          signal: init.signal,
        });
        if (response.status < 400) return response;
        error = await this.refusal(method, path, response);
        const retryAfter = Number(response.headers.get('retry-after'));
        if (Number.isFinite(retryAfter) && retryAfter > 0) retryAfterMs = Math.min(60_000, retryAfter * 1000);
        const transient = response.status === 429 || (idempotent && (response.status >= 500 || response.status === 408));
        if (!transient || attempt >= this.retries) throw error;
      } catch (err) {
        if (err instanceof FarmApiError) throw err;
        if (init.signal?.aborted) throw err;
        error = new FarmApiError(
          null,
          method,
          path,
          `cannot reach the master at ${this.baseUrl} (${describeNetworkError(err)}): is it running, and is --master (FARM_MASTER_URL) right?`,
          { cause: err },
        );
        if (!idempotent || attempt >= this.retries) throw error;
      }
      const delayMs = retryAfterMs ?? this.retryDelayMs * 2 ** attempt * (0.75 + Math.random() / 2);
      this.onRetry?.(`${method} ${path}`, error, delayMs);
      await sleep(delayMs);
    }
  }

  private async refusal(method: string, path: string, response: Response): Promise<FarmApiError> {
    const text = await response.text().catch(() => '');
    let message = text.slice(0, 500) || `HTTP ${response.status}`;
    try {
      const body = JSON.parse(text) as { error?: unknown };
      if (typeof body.error === 'string') message = body.error;
    } catch {
      // Not the master's JSON error shape (a proxy's error page): keep the text.
    }
    return new FarmApiError(response.status, method, path, message);
  }

  /** A JSON answer, checked against `schema`. */
  private async json<S extends z.ZodType>(schema: S, method: string, path: string, init: { query?: Query; body?: unknown } = {}): Promise<z.infer<S>> {
    const response = await this.request(method, path, init);
    const body: unknown = await response.json().catch(() => {
      throw new FarmApiError(response.status, method, path, `the master's answer to ${method} ${path} is not JSON`);
    });
    const parsed = schema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new FarmApiError(
        response.status,
        method,
        path,
        `the master's answer to ${method} ${path} does not match this client (${issue?.path.join('.') || 'body'}: ${issue?.message}); are the CLI and the master the same version?`,
      );
    }
    return parsed.data;
  }

  // ---- jobs
  jobStatus(jobId: string): Promise<JobStatusResponse> {
    return this.json(jobStatusSchema, 'GET', `/job_status/${encodeURIComponent(jobId)}`);
  }

  listJobs(query: { limit?: number; cursor?: string; status?: JobStatus } = {}): Promise<JobListResponse> {
    return this.json(jobListResponseSchema, 'GET', '/jobs', { query });
  }

  frames(jobId: string, query: { after?: number; limit?: number } = {}): Promise<FrameListResponse> {
    return this.json(frameListResponseSchema, 'GET', `/jobs/${encodeURIComponent(jobId)}/frames`, { query });
  }

  /** Every stored frame of a job, a page at a time. */
  async *allFrames(jobId: string, pageSize = 1000): AsyncGenerator<FrameListItem> {
    let after: number | undefined;
    for (;;) {
      const page = await this.frames(jobId, { after, limit: pageSize });
      yield* page.frames;
      if (page.next_after === null) return;
      after = page.next_after;
    }
  }

  tasks(jobId: string): Promise<TaskListResponse> {
    return this.json(taskListResponseSchema, 'GET', `/jobs/${encodeURIComponent(jobId)}/tasks`);
  }

  async taskLog(jobId: string, taskId: string): Promise<string> {
    const response = await this.request('GET', `/jobs/${encodeURIComponent(jobId)}/tasks/${encodeURIComponent(taskId)}/log`);
    return response.text();
  }

  blocklist(jobId: string): Promise<BlocklistResponse> {
    return this.json(blocklistResponseSchema, 'GET', `/jobs/${encodeURIComponent(jobId)}/blocklist`);
  }

  webhook(jobId: string): Promise<WebhookStatus> {
    return this.json(webhookStatusSchema, 'GET', `/jobs/${encodeURIComponent(jobId)}/webhook`);
  }

  /** A frame's bytes as a streaming Response (`x-farm-sha256` carries its hash). */
  frame(jobId: string, frame: number, signal?: AbortSignal): Promise<Response> {
    return this.request('GET', `/jobs/${encodeURIComponent(jobId)}/frames/${frame}`, { signal });
  }

  /** Every frame in one ZIP, as a streaming Response. */
  framesZip(jobId: string, signal?: AbortSignal): Promise<Response> {
    return this.request('GET', `/jobs/${encodeURIComponent(jobId)}/frames.zip`, { signal });
  }

  // ---- job control
  pause(jobId: string): Promise<JobControlResponse> {
    return this.json(jobControlResponseSchema, 'POST', `/jobs/${encodeURIComponent(jobId)}/pause`);
  }

  resume(jobId: string): Promise<JobControlResponse> {
    return this.json(jobControlResponseSchema, 'POST', `/jobs/${encodeURIComponent(jobId)}/resume`);
  }

  cancel(jobId: string): Promise<JobControlResponse> {
    return this.json(jobControlResponseSchema, 'POST', `/jobs/${encodeURIComponent(jobId)}/cancel`);
  }

  updateJob(jobId: string, body: UpdateJobRequest): Promise<JobControlResponse> {
    return this.json(jobControlResponseSchema, 'PATCH', `/jobs/${encodeURIComponent(jobId)}`, { body });
  }

  requeueFailed(jobId: string): Promise<RequeueResponse> {
    return this.json(requeueResponseSchema, 'POST', `/jobs/${encodeURIComponent(jobId)}/requeue_failed`);
  }

  deleteJob(jobId: string): Promise<DeleteJobResponse> {
    return this.json(deleteJobResponseSchema, 'DELETE', `/jobs/${encodeURIComponent(jobId)}`);
  }

  // ---- nodes
  workers(): Promise<WorkerListResponse> {
    return this.json(workerListResponseSchema, 'GET', '/workers');
  }

  controlWorker(workerId: string, action: 'drain' | 'disable' | 'enable'): Promise<WorkerControlResponse> {
    return this.json(workerControlResponseSchema, 'POST', `/workers/${encodeURIComponent(workerId)}/${action}`);
  }
}

function describeNetworkError(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message ?? String(err);
}
