/**
 * Input checks shared by the routes. Every body, path parameter and query string goes through
 * one of these, so a user's mistake is a 4xx that says what was wrong, never a 500.
 */
import type { Context } from 'hono';
import type { z } from 'zod';
import { fail } from './errors.ts';

/** The value at `path` inside `input`, or undefined where the path leads nowhere. */
function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/** The first problem zod found in `input`, as one sentence. */
export function describeIssue(error: z.ZodError, input?: unknown): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid input';
  const field = issue.path.join('.');
  // zod 4 leaves `issue.input` out of issues unless asked to, so whether the field was sent at
  // all is read from the parsed value: "abc" for a number is "must be a number", not "required".
  if (issue.code === 'invalid_type' && valueAt(input, issue.path) === undefined) return `${field || 'value'} is required`;
  if (issue.code === 'unrecognized_keys') return `unknown field(s): ${issue.keys.join(', ')}`;
  return field && !issue.message.startsWith(field) ? `${field}: ${issue.message}` : issue.message;
}

/** Parses `value` with `schema` or answers 400 with the first problem. */
export function parseOr400<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) fail(400, describeIssue(result.error, value));
  return result.data;
}

/** Declared body length, or null when the client streams without one. */
export function contentLength(c: Context): number | null {
  const header = c.req.header('content-length');
  if (header === undefined) return null;
  const n = Number(header);
  if (!Number.isInteger(n) || n < 0) fail(400, 'Content-Length is not a valid number');
  return n;
}

/**
 * Refuses a body whose declared size is over `maxBytes` before reading any of it. `setting` names
 * the variable that sets the limit, so the 413 says what an operator would change.
 */
export function assertBodySize(c: Context, maxBytes: number, what: string, setting?: string): void {
  const length = contentLength(c);
  if (length !== null && length > maxBytes) {
    fail(413, `${what} is ${length} bytes, over the limit of ${maxBytes} bytes${setting ? ` (${setting})` : ''}`);
  }
}

/**
 * Reads a body as text, stopping with 413 as soon as it passes `maxBytes`: a body sent without a
 * Content-Length (chunked) is never buffered beyond the limit.
 */
async function readTextCapped(c: Context, maxBytes: number, what: string, setting: string): Promise<string> {
  const body = c.req.raw.body;
  if (!body) return '';
  const length = contentLength(c);
  if (length !== null) {
    // The size is known (the HTTP layer holds the body to it): refuse it or read it whole, natively.
    if (length > maxBytes) fail(413, `${what} is over the limit of ${maxBytes} bytes (${setting})`);
    try {
      return await c.req.raw.text();
    } catch {
      fail(400, `${what} ended before it was complete (the connection was cut); send it again`);
    }
  }
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    let chunk: ReadableStreamReadResult<Uint8Array>;
    try {
      chunk = await reader.read();
    } catch {
      // The client stopped sending mid-body (a reset connection): its mistake, not ours.
      fail(400, `${what} ended before it was complete (the connection was cut); send it again`);
    }
    const { done, value } = chunk;
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      fail(413, `${what} is over the limit of ${maxBytes} bytes (${setting})`);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return new TextDecoder().decode(bytes);
}

function mediaType(c: Context): string {
  return (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
}

/** Reads a JSON body of bounded size and validates it. */
export async function readJson<S extends z.ZodType>(c: Context, schema: S, maxBytes: number): Promise<z.infer<S>> {
  if (mediaType(c) !== 'application/json') {
    fail(415, `send the body as JSON with Content-Type: application/json (got ${c.req.header('content-type') ?? 'none'})`);
  }
  assertBodySize(c, maxBytes, 'the JSON body', 'MAX_JSON_BYTES');
  const text = await readTextCapped(c, maxBytes, 'the JSON body', 'MAX_JSON_BYTES');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // Covers malformed JSON and nesting deep enough to exhaust the parser's stack.
    fail(400, 'the body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(400, 'the JSON body must be an object');
  return parseOr400(schema, value);
}

/** Reads a multipart/form-data body of bounded size. workerd buffers it whole, hence the cap. */
export async function readMultipart(c: Context, maxBytes: number): Promise<FormData> {
  if (mediaType(c) !== 'multipart/form-data') {
    fail(415, `send the body as multipart/form-data (got ${c.req.header('content-type') ?? 'none'})`);
  }
  const length = contentLength(c);
  if (length === null) fail(411, 'a multipart body needs a Content-Length header');
  assertBodySize(c, maxBytes, 'the multipart body', 'MAX_SUBMIT_BYTES');
  try {
    return await c.req.raw.formData();
  } catch {
    fail(400, 'the body is not valid multipart/form-data (truncated, or a wrong boundary)');
  }
}

/** The text value of a multipart field, or undefined when absent or blank; a file where text belongs is an error. */
export function formText(form: FormData, field: string): string | undefined {
  const value = form.get(field);
  if (value === null) return undefined;
  if (typeof value !== 'string') fail(400, `${field} must be a text field, not a file`);
  // `curl -F start_frame=` sends an empty field: it is absent, not the 0 that number coercion makes of it.
  return value.trim() === '' ? undefined : value;
}

/** Path parameters that name ids we minted. */
export function requireId(value: string | undefined, field: string): string {
  if (!value || !/^[0-9a-f-]{36}$/.test(value)) fail(400, `${field} is not a valid id`);
  return value;
}

/** Hex SHA-256 of a byte buffer. */
export async function sha256Hex(data: ArrayBuffer | ArrayBufferView): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', data as ArrayBuffer);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}
