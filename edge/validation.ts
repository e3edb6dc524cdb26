/**
 * Input checks shared by the routes. Every body, path parameter and query string goes through
 * one of these, so a user's mistake is a 4xx that says what was wrong, never a 500.
 */
import type { Context } from 'hono';
import type { z } from 'zod';
import { fail } from './errors.ts';
import {
  getMultipartBoundary,
  MaxHeaderSizeExceededError,
  MaxPartsExceededError,
  MultipartParseError,
  streamMultipart,
  type StreamedPart,
} from './multipart-stream.ts';

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
function describeIssue(error: z.ZodError, input?: unknown): string {
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

/** Most bytes a text field of a multipart form may have: fields are read whole, files streamed. */
const MAX_FIELD_BYTES = 64 * 1024;
const MULTIPART_LIMITS = { maxHeaderBytes: 8 * 1024, maxParts: 100 };

/**
 * Opens a multipart/form-data body for streaming after checking its type, its declared length (at
 * most `maxBytes`, MAX_UPLOAD_BYTES; `overLimitHint` ends the 413) and its boundary. Files are read
 * from their parts' streams and text with `partText`; a malformed body fails while it is read: pass
 * such errors through `multipartError`.
 */
export function openMultipart(c: Context, maxBytes: number, overLimitHint = ''): AsyncGenerator<StreamedPart> {
  const contentType = c.req.header('content-type') ?? '';
  if (mediaType(c) !== 'multipart/form-data') fail(415, `send the body as multipart/form-data (got ${contentType || 'none'})`);
  const length = contentLength(c);
  if (length === null) fail(411, 'a multipart body needs a Content-Length header');
  if (length > maxBytes) {
    fail(413, `the multipart body is ${length} bytes, over the limit of ${maxBytes} bytes (MAX_UPLOAD_BYTES)${overLimitHint ? `. ${overLimitHint}` : ''}`);
  }
  const boundary = getMultipartBoundary(contentType);
  if (!boundary) fail(400, 'the body is not valid multipart/form-data (its Content-Type names no boundary)');
  if (!c.req.raw.body || length === 0) fail(400, 'the body is not valid multipart/form-data (it is empty)');
  return streamMultipart(c.req.raw.body, boundary, MULTIPART_LIMITS);
}

/**
 * The text of a multipart field, or undefined when blank; a file where text belongs is an error.
 * `curl -F start_frame=` sends an empty field: it is absent, not the 0 that number coercion makes of it.
 */
export async function partText(part: StreamedPart, field: string): Promise<string | undefined> {
  if (part.filename !== undefined) fail(400, `${field} must be a text field, not a file`);
  const reader = part.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > MAX_FIELD_BYTES) fail(413, `${field} is over ${MAX_FIELD_BYTES} bytes`);
    chunks.push(value);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  const value = new TextDecoder().decode(bytes);
  return value.trim() === '' ? undefined : value;
}

/** Turns an error met while reading a multipart body into its 4xx; any other error is thrown on. */
export function multipartError(err: unknown): never {
  if (err instanceof MaxPartsExceededError) fail(413, `the form has more than ${MULTIPART_LIMITS.maxParts} parts`);
  if (err instanceof MaxHeaderSizeExceededError) fail(400, `a part of the form has more than ${MULTIPART_LIMITS.maxHeaderBytes} bytes of headers`);
  if (err instanceof MultipartParseError) fail(400, `the body is not valid multipart/form-data (${err.message})`);
  throw err;
}

/** Path parameters that name ids we minted. */
export function requireId(value: string | undefined, field: string): string {
  if (!value || !/^[0-9a-f-]{36}$/.test(value)) fail(400, `${field} is not a valid id`);
  return value;
}
