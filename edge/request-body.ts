/**
 * Streaming a request body into R2 while telling a client that stopped sending (a node that died
 * or lost its network mid-upload) from a storage failure: the first is the client's mistake and
 * gets a 400, the second is ours. R2 only takes streams of known length, hence the
 * FixedLengthStream, which also refuses a body that ends before its Content-Length.
 */
import { fail } from './errors.ts';

export interface WatchedBody {
  /** The body, to hand to R2. */
  stream: ReadableStream<Uint8Array>;
  /** Whether reading the client's body failed (it was cut off), as opposed to R2 failing. */
  cutShort: () => boolean;
}

export function watchBody(body: ReadableStream<Uint8Array>, length: number): WatchedBody {
  let cut = false;
  const reader = body.getReader();
  const watched = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (err) {
        cut = true;
        controller.error(err);
        return;
      }
      if (chunk.done) controller.close();
      else controller.enqueue(chunk.value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
  return { stream: watched.pipeThrough(new FixedLengthStream(length)), cutShort: () => cut };
}

/**
 * Turns an error from storing `body` into the right answer: a 400 when the client's body was cut
 * off or shorter than its Content-Length; anything else is thrown on as it is.
 */
export function failIfCutShort(err: unknown, body: WatchedBody, what: string): void {
  if (body.cutShort() || /length|stream|network connection lost|disconnected/i.test(String(err))) {
    fail(400, `${what} ended before its Content-Length: the connection was cut or the body is short; send it again`);
  }
}
