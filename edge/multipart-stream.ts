/**
 * multipart/form-data, streamed: parts come one at a time, each with its content as a stream read
 * from the request as it arrives, so a file part of any size passes through in constant memory
 * (workerd's `formData()` holds the whole body, about 4.6 times its size at peak, see STACK.md).
 *
 * @remix-run/multipart-parser (0.16) parses the part headers here (Content-Disposition with its
 * quoting and `filename*`, Content-Type) and gives the error types, but its parser collects each
 * part's content in memory before yielding it (`MultipartPart.content`), so the boundary search
 * over the stream is done here. Nothing here is Workers-only.
 */
import { MaxHeaderSizeExceededError, MaxPartsExceededError, MultipartParseError, MultipartPart } from '@remix-run/multipart-parser';

export { getMultipartBoundary, MultipartParseError, MaxHeaderSizeExceededError, MaxPartsExceededError } from '@remix-run/multipart-parser';

export interface StreamedPart {
  /** The form field's name (Content-Disposition `name`). */
  name: string | undefined;
  /** The file's name as the client sent it; undefined for a text field. */
  filename: string | undefined;
  /**
   * The part's content. Read it to its end or leave it: the next part is found once this one has
   * been read or skipped, which happens when the caller asks for the next part.
   */
  body: ReadableStream<Uint8Array>;
}

export interface MultipartLimits {
  /** Most bytes of headers one part may have. */
  maxHeaderBytes: number;
  /** Most parts one body may have. */
  maxParts: number;
}

const encoder = new TextEncoder();
const CRLF_CRLF = encoder.encode('\r\n\r\n');

/** Index of `needle` in `haystack` from `from`, or -1. The native indexOf finds each candidate's first byte. */
function indexOf(haystack: Uint8Array, needle: Uint8Array, from = 0): number {
  const first = needle[0]!;
  const last = haystack.length - needle.length;
  for (let i = haystack.indexOf(first, from); i !== -1 && i <= last; i = haystack.indexOf(first, i + 1)) {
    let j = 1;
    while (j < needle.length && haystack[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

/** Length of the longest end of `haystack` that is a start of `needle` (shorter than `needle`), or 0. */
function partialMatchAtEnd(haystack: Uint8Array, needle: Uint8Array): number {
  const from = Math.max(0, haystack.length - needle.length + 1);
  for (let i = haystack.indexOf(needle[0]!, from); i !== -1; i = haystack.indexOf(needle[0]!, i + 1)) {
    let j = 1;
    while (i + j < haystack.length && haystack[i + j] === needle[j]) j++;
    if (i + j === haystack.length) return j;
  }
  return 0;
}

/** The request body as it arrives, with the bytes not yet used. */
class Source {
  pending: Uint8Array = new Uint8Array(0);
  private ended = false;
  constructor(private readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  /** Appends the next chunk to `pending`; false at the end of the body. */
  async more(): Promise<boolean> {
    if (this.ended) return false;
    let chunk: ReadableStreamReadResult<Uint8Array>;
    try {
      chunk = await this.reader.read();
    } catch {
      throw new MultipartParseError('the body ended before it was complete (the connection was cut)');
    }
    if (chunk.done) {
      this.ended = true;
      return false;
    }
    if (this.pending.length === 0) {
      this.pending = chunk.value;
    } else {
      // Only a few bytes that may start a boundary are pending here, and rarely.
      const joined = new Uint8Array(this.pending.length + chunk.value.length);
      joined.set(this.pending);
      joined.set(chunk.value, this.pending.length);
      this.pending = joined;
    }
    return true;
  }

  /** Waits for at least `n` pending bytes, or fails as a truncated body. */
  async need(n: number): Promise<void> {
    while (this.pending.length < n) {
      if (!(await this.more())) throw new MultipartParseError('the body ended before its closing boundary (truncated)');
    }
  }
}

/**
 * Yields the parts of a multipart body with boundary `boundary`, in order. Throws
 * `MultipartParseError` (or a subclass, for the limits) on a malformed or truncated body, from the
 * iteration or from a part's body stream.
 */
export async function* streamMultipart(body: ReadableStream<Uint8Array>, boundary: string, limits: MultipartLimits): AsyncGenerator<StreamedPart> {
  const source = new Source(body.getReader());
  const dashBoundary = encoder.encode(`--${boundary}`);
  // Within the body, a part ends where a line starts with the boundary.
  const delimiter = encoder.encode(`\r\n--${boundary}`);

  // The body opens with the boundary (a preamble before it, which RFC 2046 allows, is sent by
  // no browser nor curl, and is refused like a boundary that does not match).
  await source.need(dashBoundary.length);
  if (indexOf(source.pending.subarray(0, dashBoundary.length), dashBoundary) !== 0) {
    throw new MultipartParseError('the body does not start with the boundary its Content-Type names');
  }
  source.pending = source.pending.subarray(dashBoundary.length);

  let parts = 0;
  for (;;) {
    // After a boundary: "--" ends the body, a line break starts a part.
    await source.need(2);
    if (source.pending[0] === 45 && source.pending[1] === 45) return;
    if (source.pending[0] !== 13 || source.pending[1] !== 10) throw new MultipartParseError('a boundary is not followed by a line break');
    source.pending = source.pending.subarray(2);
    if (++parts > limits.maxParts) throw new MaxPartsExceededError(limits.maxParts);

    let headerEnd: number;
    for (;;) {
      headerEnd = indexOf(source.pending, CRLF_CRLF);
      if (headerEnd !== -1) break;
      if (source.pending.length > limits.maxHeaderBytes) throw new MaxHeaderSizeExceededError(limits.maxHeaderBytes);
      await source.need(source.pending.length + 1);
    }
    if (headerEnd > limits.maxHeaderBytes) throw new MaxHeaderSizeExceededError(limits.maxHeaderBytes);
    const headers = new MultipartPart(source.pending.slice(0, headerEnd), []);
    source.pending = source.pending.subarray(headerEnd + CRLF_CRLF.length);
    let name: string | undefined;
    let filename: string | undefined;
    try {
      name = headers.name;
      filename = headers.filename;
    } catch {
      throw new MultipartParseError('a part has headers that are not valid UTF-8');
    }

    let finished = false;
    /** The next piece of this part's content, or null at its end. */
    const nextChunk = async (): Promise<Uint8Array | null> => {
      for (;;) {
        if (finished) return null;
        const at = indexOf(source.pending, delimiter);
        if (at !== -1) {
          const chunk = source.pending.subarray(0, at);
          source.pending = source.pending.subarray(at + delimiter.length);
          finished = true;
          if (chunk.length > 0) return chunk;
          return null;
        }
        // All but a tail that may be the start of the delimiter is content. Usually no such tail
        // is left, so the next chunk is used as it comes instead of being copied onto one.
        const safe = source.pending.length - partialMatchAtEnd(source.pending, delimiter);
        if (safe > 0) {
          const chunk = source.pending.subarray(0, safe);
          source.pending = source.pending.subarray(safe);
          return chunk;
        }
        if (!(await source.more())) throw new MultipartParseError('the body ended before its closing boundary (truncated)');
      }
    };
    const content = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          try {
            const chunk = await nextChunk();
            if (chunk) controller.enqueue(chunk);
            else controller.close();
          } catch (err) {
            controller.error(err);
          }
        },
      },
      // Nothing read ahead: the caller's pace is the client's.
      { highWaterMark: 0 },
    );
    yield { name, filename, body: content };
    // Whatever the caller did not read is skipped.
    while ((await nextChunk()) !== null);
  }
}
