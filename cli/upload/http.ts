/**
 * The CLI's HTTP calls to the master for uploads and submission (undici). An answer of 4xx is
 * the master's considered reply and becomes a `FarmHttpError` with its `{ error }` message;
 * network errors, 5xx, 408 and 429 are retried with exponential backoff (p-retry).
 */
import pRetry, { AbortError } from 'p-retry';
import { Agent, request, type Dispatcher } from 'undici';

export class FarmHttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'FarmHttpError';
    this.status = status;
  }
}

export interface MasterConnection {
  baseUrl: string;
  token?: string;
  dispatcher: Dispatcher;
}

export function connect(baseUrl: string, token?: string): MasterConnection {
  return {
    baseUrl: baseUrl.replace(/\/+$/, ''),
    token,
    // A part of 16 MiB on a slow line takes minutes: generous body timeouts.
    dispatcher: new Agent({ headersTimeout: 600_000, bodyTimeout: 600_000, keepAliveTimeout: 10_000, connections: 16 }),
  };
}

/** What a retry needs to know to back off, and how long (a few tries for a CLI run by a person). */
export const RETRY = { retries: 6, minTimeout: 500, maxTimeout: 15_000, factor: 2, randomize: true };

export interface CallInit {
  headers?: Record<string, string>;
  body?: Dispatcher.DispatchOptions['body'];
  signal?: AbortSignal;
}

/** One request; throws FarmHttpError for any status >= 400 (AbortError-wrapped when final). */
export async function send(conn: MasterConnection, method: Dispatcher.HttpMethod, path: string, init: CallInit = {}): Promise<Dispatcher.ResponseData> {
  let response: Dispatcher.ResponseData;
  try {
    response = await request(`${conn.baseUrl}${path}`, {
      method,
      headers: { ...(conn.token ? { authorization: `Bearer ${conn.token}` } : {}), ...init.headers },
      body: init.body,
      dispatcher: conn.dispatcher,
      signal: init.signal,
    });
  } catch (err) {
    if (init.signal?.aborted) throw new AbortError(err as Error);
    throw new Error(`${method} ${conn.baseUrl}${path}: ${(err as Error).message}`, { cause: err });
  }
  if (response.statusCode < 400) return response;
  const text = await response.body.text().catch(() => '');
  let message = text.slice(0, 500) || `HTTP ${response.statusCode}`;
  try {
    message = (JSON.parse(text) as { error?: string }).error ?? message;
  } catch {
    // Not the master's JSON error shape (a proxy's page): keep the text.
  }
  const error = new FarmHttpError(response.statusCode, message);
  if (response.statusCode >= 500 || response.statusCode === 429 || response.statusCode === 408) throw error;
  throw new AbortError(error);
}

/** `fn` with retries on transient failures; the final error is unwrapped. */
export function retrying<T>(fn: () => Promise<T>, signal?: AbortSignal, onRetry?: (error: Error, delayMs: number) => void): Promise<T> {
  return pRetry(fn, { ...RETRY, signal, onFailedAttempt: ({ error, retryDelay }) => onRetry?.(error, retryDelay) });
}

/** A JSON request with retries; answers the parsed body. */
export function callJson<T>(
  conn: MasterConnection,
  method: Dispatcher.HttpMethod,
  path: string,
  body?: unknown,
  signal?: AbortSignal,
  onRetry?: (error: Error, delayMs: number) => void,
): Promise<T> {
  return retrying(async () => {
    const response = await send(conn, method, path, {
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
    return (await response.body.json()) as T;
  }, signal, onRetry);
}
