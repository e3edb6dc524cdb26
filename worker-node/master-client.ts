/**
 * The node's HTTP client for the master (undici). Transient trouble (network errors, 5xx, 429)
 * is retried with exponential backoff by p-retry; a 4xx is the master's considered answer and is
 * raised at once as a `MasterError` that carries the status and the master's message.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import pRetry, { AbortError } from 'p-retry';
import { Agent, request, type Dispatcher } from 'undici';
import {
  HEADER_LEASE_ID,
  HEADER_RENDER_MS,
  HEADER_SHA256,
  HEADER_WORKER_ID,
  type RegisterWorkerRequest,
  type RegisterWorkerResponse,
  type TaskAssignment,
  type UpdateTaskStatusRequest,
  type UpdateTaskStatusResponse,
  type UploadResultResponse,
} from '../protocol/schemas.ts';

export class MasterError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'MasterError';
    this.status = status;
  }
}

export interface RetryPolicy {
  /** Attempts after the first; Infinity to wait out a master that is down. */
  retries: number;
  maxDelayMs: number;
}

/** For calls about a task in hand: give up after about a minute, when the lease is gone anyway. */
export const TASK_RETRY: RetryPolicy = { retries: 8, maxDelayMs: 10_000 };
/** For registering and polling: a node never exits because the master is down. */
export const FOREVER_RETRY: RetryPolicy = { retries: Infinity, maxDelayMs: 30_000 };

export interface MasterClientOptions {
  baseUrl: string;
  token?: string;
  /** Called before each retry, so the daemon can log the master's state. */
  onRetry?: (what: string, error: unknown, delayMs: number) => void;
}

export class MasterClient {
  readonly baseUrl: string;
  private readonly token: string | undefined;
  private readonly onRetry: MasterClientOptions['onRetry'];
  // Long polls hold a connection for up to 30 s; keep headers timeouts above that.
  private readonly dispatcher = new Agent({ headersTimeout: 120_000, bodyTimeout: 300_000, keepAliveTimeout: 10_000 });

  constructor(options: MasterClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.token = options.token;
    this.onRetry = options.onRetry;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.token ? { authorization: `Bearer ${this.token}` } : {}), ...extra };
  }

  private async retrying<T>(what: string, policy: RetryPolicy, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return pRetry(fn, {
      retries: policy.retries,
      minTimeout: 500,
      maxTimeout: policy.maxDelayMs,
      factor: 2,
      randomize: true,
      signal,
      onFailedAttempt: ({ error, retryDelay }) => this.onRetry?.(what, error, retryDelay),
    });
  }

  /** Sends one request; throws AbortError(MasterError) for answers that retrying cannot change. */
  private async send(method: Dispatcher.HttpMethod, path: string, init: { headers?: Record<string, string>; body?: Dispatcher.DispatchOptions['body']; signal?: AbortSignal } = {}) {
    const response = await request(`${this.baseUrl}${path}`, {
      method,
      headers: this.headers(init.headers),
      body: init.body,
      dispatcher: this.dispatcher,
      signal: init.signal,
    });
    if (response.statusCode < 400) return response;
    const text = await response.body.text().catch(() => '');
    let message = text.slice(0, 500);
    try {
      message = (JSON.parse(text) as { error?: string }).error ?? message;
    } catch {
      // Not our JSON error shape: keep the raw text.
    }
    const error = new MasterError(response.statusCode, `${method} ${path}: ${response.statusCode} ${message}`);
    if (response.statusCode >= 500 || response.statusCode === 429 || response.statusCode === 408) throw error;
    throw new AbortError(error);
  }

  private async json<T>(method: Dispatcher.HttpMethod, path: string, body: unknown, policy: RetryPolicy, signal?: AbortSignal): Promise<T | null> {
    return this.retrying(`${method} ${path}`, policy, async () => {
      const response = await this.send(method, path, {
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
      if (response.statusCode === 204) {
        await response.body.dump();
        return null;
      }
      return (await response.body.json()) as T;
    }, signal);
  }

  register(body: RegisterWorkerRequest, signal?: AbortSignal): Promise<RegisterWorkerResponse> {
    return this.json<RegisterWorkerResponse>('POST', '/register_worker', body, FOREVER_RETRY, signal) as Promise<RegisterWorkerResponse>;
  }

  /** Long-polls for work: null after `waitMs` without any. */
  getJob(workerId: string, waitMs: number, signal?: AbortSignal): Promise<TaskAssignment | null> {
    return this.json<TaskAssignment>('POST', '/get_job', { worker_id: workerId, wait_ms: waitMs }, FOREVER_RETRY, signal);
  }

  async updateTask(body: UpdateTaskStatusRequest): Promise<UpdateTaskStatusResponse> {
    return (await this.json<UpdateTaskStatusResponse>('POST', '/update_task_status', body, TASK_RETRY))!;
  }

  /** Streams a rendered frame from disk with its SHA-256, which R2 verifies on arrival. */
  async uploadFrame(args: { workerId: string; taskId: string; leaseId: string; frame: number; path: string; renderMs: number | null }): Promise<UploadResultResponse> {
    const ext = args.path.split('.').pop()!.toLowerCase();
    const [sha256, { size }] = await Promise.all([sha256File(args.path), stat(args.path)]);
    return this.retrying(`uploading frame ${args.frame}`, TASK_RETRY, async () => {
      const response = await this.send('PUT', `/tasks/${args.taskId}/frames/${args.frame}?ext=${encodeURIComponent(ext)}`, {
        headers: {
          'content-type': 'application/octet-stream',
          'content-length': String(size),
          [HEADER_WORKER_ID]: args.workerId,
          [HEADER_LEASE_ID]: args.leaseId,
          [HEADER_SHA256]: sha256,
          ...(args.renderMs !== null ? { [HEADER_RENDER_MS]: String(Math.round(args.renderMs)) } : {}),
        },
        body: createReadStream(args.path),
      });
      return (await response.body.json()) as UploadResultResponse;
    });
  }

  async uploadLog(args: { workerId: string; taskId: string; leaseId: string; path: string }): Promise<void> {
    const { size } = await stat(args.path);
    if (size === 0) return;
    await this.retrying('uploading the task log', TASK_RETRY, async () => {
      const response = await this.send('PUT', `/tasks/${args.taskId}/log`, {
        headers: {
          'content-type': 'text/plain',
          'content-length': String(size),
          [HEADER_WORKER_ID]: args.workerId,
          [HEADER_LEASE_ID]: args.leaseId,
        },
        body: createReadStream(args.path),
      });
      await response.body.dump();
    });
  }

  /** Streams a stored blend to `dest`, hashing as it goes; returns the hex SHA-256. */
  async downloadBlend(blendFile: string, dest: string): Promise<string> {
    return this.retrying(`downloading ${blendFile}`, TASK_RETRY, async () => {
      const response = await this.send('GET', `/download_blend/${encodeURIComponent(blendFile)}`);
      const hash = createHash('sha256');
      const hasher = new Transform({
        transform(chunk, _enc, done) {
          hash.update(chunk);
          done(null, chunk);
        },
      });
      await pipeline(response.body, hasher, createWriteStream(dest));
      return hash.digest('hex');
    });
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}

/** Hex SHA-256 of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
