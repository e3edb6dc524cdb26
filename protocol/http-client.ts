/**
 * The one HTTP client of the master's API, shared by the render node (worker-node/master-client.ts),
 * the `farm` CLI (protocol/client.ts, cli/upload/) and tests. Node only: it streams bodies with
 * undici, and the CLI bundle aliases `undici` to the release that still runs on Node 20.
 *
 * The rules, written once here:
 *  - an answer of 400 or more becomes a `FarmApiError` carrying the status and the master's own
 *    `{ error }` text; a master that cannot be reached is one with status null;
 *  - network errors, 5xx, 408 and 429 are transient (`retryable`); the rest is the master's
 *    considered answer and is never repeated;
 *  - a transient failure is tried again (p-retry, exponential backoff, at least as long as a
 *    429's Retry-After) when the request is safe to repeat: GET and HEAD, and calls the master
 *    makes repeatable (a claim id, a lease, a blob named by its hash) marked `idempotent`. Any
 *    other request is repeated only after a 429, which the master answers before doing anything.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pRetry, { AbortError } from 'p-retry';
import { Agent, request, type Dispatcher } from 'undici';
import type { z } from 'zod';

/**
 * A request the master refused (status 400-599), or could not be reached (status null).
 * `message` is the master's own `error` text where it sent one; `retryable` says whether trying
 * again later may work (no answer, 5xx, 408, 429).
 */
export class FarmApiError extends Error {
  readonly status: number | null;
  readonly method: string;
  readonly path: string;
  readonly retryable: boolean;
  /** How long a 429 or 503 asked to wait (Retry-After), in ms. */
  readonly retryAfterMs: number | null;
  constructor(status: number | null, method: string, path: string, message: string, options: { cause?: unknown; retryAfterMs?: number | null } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FarmApiError';
    this.status = status;
    this.method = method;
    this.path = path;
    this.retryable = status === null || status >= 500 || status === 408 || status === 429;
    this.retryAfterMs = options.retryAfterMs ?? null;
  }

  /** For logs: the request, the status and the master's text. */
  get summary(): string {
    return `${this.method} ${this.path}: ${this.status ?? 'no answer'} ${this.message}`;
  }
}

/** How often and how patiently a transient failure is tried again. */
export interface RetryPolicy {
  /** Tries after the first; Infinity to wait out a master that is down. */
  retries: number;
  /** The first backoff; it doubles per try, randomised up to twice as long. */
  minDelayMs: number;
  maxDelayMs: number;
  /** Give up once this long has passed since the first try. */
  maxRetryTimeMs?: number;
}

/** The longest a Retry-After is honoured before trying again anyway. */
const MAX_RETRY_AFTER_MS = 60_000;

export type Query = Record<string, string | number | undefined>;

export interface SendInit {
  query?: Query;
  headers?: Record<string, string>;
  /**
   * Sent as it is (a stream needs a content-length header). A stream can be sent once: a caller
   * that wants retries makes one per try, inside `retrying`, and sends it with `send`.
   */
  body?: Dispatcher.DispatchOptions['body'];
  /** Sent as JSON, with its content type. */
  json?: unknown;
  signal?: AbortSignal;
  /** The bearer token for this request, instead of the client's. */
  token?: string;
}

export interface RetryInit {
  /** Safe to repeat after any transient failure (see the top of this file); default: GET and HEAD. */
  idempotent?: boolean;
  /** Instead of the client's policy. */
  policy?: RetryPolicy;
  signal?: AbortSignal;
}

export type RequestInit = SendInit & Omit<RetryInit, 'signal'>;

export interface HttpClientOptions {
  /** The master, e.g. `http://localhost:8000`. */
  baseUrl: string;
  /** The bearer token of every request; a function where it changes (a node's credential). */
  token?: string | (() => string | undefined);
  retry: RetryPolicy;
  /** How long to wait for an answer's headers (a long poll holds them for 30 s). */
  headersTimeoutMs: number;
  /** How long a body may stall. */
  bodyTimeoutMs: number;
  /** Connections to the master at once. */
  connections?: number;
  /** Told before each retry: what failed, why, and the wait. */
  onRetry?: (what: string, error: Error, delayMs: number) => void;
}

export type Response = Dispatcher.ResponseData;

export class HttpClient {
  readonly baseUrl: string;
  private readonly token: () => string | undefined;
  private readonly policy: RetryPolicy;
  private readonly onRetry: HttpClientOptions['onRetry'];
  private readonly dispatcher: Agent;

  constructor(options: HttpClientOptions) {
    let url: URL;
    try {
      url = new URL(options.baseUrl);
    } catch {
      throw new FarmApiError(null, 'GET', '/', `the master URL "${options.baseUrl}" is not a URL (like http://host:8000)`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new FarmApiError(null, 'GET', '/', `the master URL must start with http:// or https:// (got ${url.protocol})`);
    }
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    const token = options.token;
    this.token = typeof token === 'function' ? token : () => token || undefined;
    this.policy = options.retry;
    this.onRetry = options.onRetry;
    this.dispatcher = new Agent({
      headersTimeout: options.headersTimeoutMs,
      bodyTimeout: options.bodyTimeoutMs,
      keepAliveTimeout: 10_000,
      ...(options.connections ? { connections: options.connections } : {}),
    });
  }

  /** The full URL of an API path (with the query string), e.g. for a browser. */
  url(path: string, query: Query = {}): string {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
    const qs = params.toString();
    return `${this.baseUrl}${path}${qs ? `?${qs}` : ''}`;
  }

  /** One try: the answer (status < 400), or a FarmApiError. */
  async send(method: Dispatcher.HttpMethod, path: string, init: SendInit = {}): Promise<Response> {
    const token = init.token ?? this.token();
    const headers: Record<string, string> = {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(init.json !== undefined ? { 'content-type': 'application/json' } : {}),
      ...init.headers,
    };
    let response: Response;
    try {
      response = await request(this.url(path, init.query), {
        method,
        headers,
        body: init.json !== undefined ? JSON.stringify(init.json) : init.body,
        dispatcher: this.dispatcher,
        signal: init.signal,
      });
    } catch (err) {
      if (init.signal?.aborted) throw err;
      throw new FarmApiError(null, method, path, `cannot reach the master at ${this.baseUrl} (${networkCause(err)}): is it running, and is its URL right?`, {
        cause: err,
      });
    }
    if (response.statusCode < 400) return response;
    const text = await response.body.text().catch(() => '');
    let message = text.slice(0, 500) || `the master answered ${response.statusCode} to ${method} ${path}`;
    try {
      const body = JSON.parse(text) as { error?: unknown };
      if (typeof body.error === 'string') message = body.error;
    } catch {
      // Not the master's JSON error shape (a proxy's error page): keep the text.
    }
    const retryAfterS = Number(header(response, 'retry-after'));
    const retryAfterMs = Number.isFinite(retryAfterS) && retryAfterS > 0 ? Math.min(retryAfterS * 1000, MAX_RETRY_AFTER_MS) : null;
    throw new FarmApiError(response.statusCode, method, path, message, { retryAfterMs });
  }

  /**
   * `fn` tried again after transient failures, by the rules at the top of this file. Errors
   * that are not a FarmApiError (a body cut short, a download whose hash is wrong) count as
   * transient for an idempotent call. The final error is thrown as it is.
   */
  retrying<T>(what: string, fn: () => Promise<T>, init: RetryInit = {}): Promise<T> {
    const policy = init.policy ?? this.policy;
    const idempotent = init.idempotent ?? false;
    return pRetry(
      async () => {
        try {
          return await fn();
        } catch (err) {
          if (init.signal?.aborted || !transient(err, idempotent)) throw new AbortError(err as Error);
          throw err;
        }
      },
      {
        retries: policy.retries,
        ...(policy.maxRetryTimeMs === undefined ? {} : { maxRetryTime: policy.maxRetryTimeMs }),
        minTimeout: policy.minDelayMs,
        maxTimeout: policy.maxDelayMs,
        factor: 2,
        randomize: true,
        signal: init.signal,
        onFailedAttempt: async ({ error, retryDelay, retriesLeft }) => {
          if (retriesLeft <= 0) return;
          // p-retry waits retryDelay after this; a Retry-After asks for at least its own wait.
          const asked = error instanceof FarmApiError ? (error.retryAfterMs ?? 0) : 0;
          this.onRetry?.(what, error, Math.max(asked, retryDelay));
          if (asked > retryDelay) await sleep(asked - retryDelay, undefined, init.signal ? { signal: init.signal } : undefined);
        },
      },
    );
  }

  /** `send` with retries; the answer's body is the caller's to read or dump. */
  request(method: Dispatcher.HttpMethod, path: string, init: RequestInit = {}): Promise<Response> {
    return this.retrying(`${method} ${path}`, () => this.send(method, path, init), this.retryInit(method, init));
  }

  /**
   * A JSON answer, its body read within the retries. A 204 answers null: a caller whose request
   * may get one says so in `T`.
   */
  async json<T = unknown>(method: Dispatcher.HttpMethod, path: string, init: RequestInit = {}): Promise<T> {
    return this.retrying(
      `${method} ${path}`,
      async () => {
        const response = await this.send(method, path, init);
        if (response.statusCode === 204) {
          await response.body.dump();
          return null as T;
        }
        const text = await response.body.text();
        try {
          return JSON.parse(text) as T;
        } catch {
          throw new FarmApiError(response.statusCode, method, path, `the master's answer to ${method} ${path} is not JSON`);
        }
      },
      this.retryInit(method, init),
    );
  }

  /** A JSON answer checked against a protocol schema, so a master and a client that disagree fail here. */
  async parsed<S extends z.ZodType>(schema: S, method: Dispatcher.HttpMethod, path: string, init: RequestInit = {}): Promise<z.infer<S>> {
    const body = await this.json(method, path, init);
    const parsed = schema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new FarmApiError(
        200,
        method,
        path,
        `the master's answer to ${method} ${path} does not match this client (${issue?.path.join('.') || 'body'}: ${issue?.message}); are the client and the master the same version?`,
      );
    }
    return parsed.data;
  }

  /** Lets the requests in flight finish, then closes the connections. */
  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  /** Ends the requests in flight at once (a command that failed half-way through an upload). */
  async destroy(): Promise<void> {
    await this.dispatcher.destroy();
  }

  private retryInit(method: string, init: RequestInit): RetryInit {
    return { idempotent: init.idempotent ?? (method === 'GET' || method === 'HEAD'), policy: init.policy, signal: init.signal };
  }
}

/** Whether a failure may go away when the same request is sent again. */
function transient(err: unknown, idempotent: boolean): boolean {
  if (err instanceof FarmApiError) return err.retryable && (idempotent || err.status === 429);
  return idempotent;
}

/** One header of an answer as a string. */
export function header(response: Response, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function networkCause(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return (err as { code?: string }).code ?? cause?.code ?? cause?.message ?? (err as Error).message ?? String(err);
}
