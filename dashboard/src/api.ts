/**
 * The master's JSON API, as the CLI reads it, with the user's token. Answers are typed with the
 * protocol's own types (protocol/), the ones the master's schemas produce.
 */
import { openTokenPanel, token } from './token.ts';

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function request(path: string, init: { method?: string; body?: unknown } = {}): Promise<Response> {
  const headers: Record<string, string> = {};
  const t = token();
  if (t) headers.authorization = `Bearer ${t}`;
  let body: string | undefined;
  if (init.body !== undefined) {
    body = JSON.stringify(init.body);
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(path, { method: init.method ?? 'GET', headers, body });
  if (res.status === 401 || res.status === 403) openTokenPanel('This master needs a token: paste a submitter token (FARM_SUBMIT_TOKEN).');
  if (!res.ok) {
    const text = await res.text();
    let message = `HTTP ${res.status}`;
    try {
      message = (JSON.parse(text) as { error?: string }).error ?? message;
    } catch {
      if (text) message = text.slice(0, 300);
    }
    throw new ApiError(res.status, message);
  }
  return res;
}

/** GET of a JSON answer. */
export async function getJson<T>(path: string): Promise<T> {
  return (await (await request(path)).json()) as T;
}

/** A change (POST, PATCH, DELETE); its answer is not needed. */
export async function send(method: 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<void> {
  await request(path, { method, body });
}

export async function getBlob(path: string): Promise<Blob> {
  return (await request(path)).blob();
}

export async function getText(path: string): Promise<string> {
  return (await request(path)).text();
}

/** An error's message for the page. */
export const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));
