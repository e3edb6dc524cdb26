/**
 * Streaming a request body into R2 while telling a client that stopped sending (a node that died
 * or lost its network mid-upload) from a storage failure: the first is the client's mistake and
 * gets a 400, the second is ours. R2 only takes streams of known length, hence the
 * FixedLengthStream, which also refuses a body that ends before its Content-Length; a stream of
 * unknown length (a file inside a multipart body) goes up in parts (`storeStream`).
 */
import { MIN_PART_BYTES } from '../protocol/schemas.ts';
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

/** What `storeStream` stored. */
export interface StreamedObject {
  key: string;
  size: number;
  /** Hex SHA-256 of the bytes, hashed as they passed. */
  sha256: string;
}

export interface StoreStreamOptions {
  httpMetadata?: R2HTTPMetadata;
  /**
   * Sees the first `headBytes` bytes (all of them for a shorter stream, none for an empty one)
   * before anything is stored: throwing here stores nothing.
   */
  checkHead?: (head: Uint8Array) => unknown;
  headBytes?: number;
}

/**
 * Stores a stream of unknown length (a file part of a multipart body) under `key` in constant
 * memory, hashing it on the way. R2 only takes streams of known length, so the bytes are gathered
 * a part of MIN_PART_BYTES (5 MiB, R2's smallest) at a time: a file that fits in one is put whole,
 * a larger one goes up as an R2 multipart upload, one part in memory at a time (R2 wants every
 * part but the last of one size). A failure aborts the upload, so nothing is left behind.
 */
export async function storeStream(
  bucket: R2Bucket,
  key: string,
  stream: ReadableStream<Uint8Array>,
  options: StoreStreamOptions = {},
): Promise<StreamedObject> {
  const headBytes = options.headBytes ?? 64 * 1024;
  const digest = new crypto.DigestStream('SHA-256');
  const hash = digest.getWriter();
  // A small file (most frames) never costs the whole 5 MiB.
  let part = new Uint8Array(256 * 1024);
  let filled = 0;
  let size = 0;
  let headChecked = false;
  let multipart: R2MultipartUpload | null = null;
  const uploaded: R2UploadedPart[] = [];
  const checkHead = async () => {
    if (headChecked) return;
    headChecked = true;
    await options.checkHead?.(part.subarray(0, Math.min(filled, headBytes)));
  };
  const reader = stream.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      await hash.write(value);
      size += value.length;
      let offset = 0;
      while (offset < value.length) {
        if (filled === part.length) {
          // Past the first 256 KiB, straight to a whole part: no steps in between to collect.
          const grown = new Uint8Array(MIN_PART_BYTES);
          grown.set(part);
          part = grown;
        }
        const n = Math.min(value.length - offset, part.length - filled);
        part.set(value.subarray(offset, offset + n), filled);
        filled += n;
        offset += n;
        if (filled >= headBytes) await checkHead();
        if (filled === MIN_PART_BYTES) {
          multipart ??= await bucket.createMultipartUpload(key, { httpMetadata: options.httpMetadata });
          // Awaited before `part` is filled again: the same 5 MiB serve every part.
          uploaded.push(await multipart.uploadPart(uploaded.length + 1, part));
          filled = 0;
        }
      }
    }
    await checkHead();
    if (multipart) {
      if (filled > 0) uploaded.push(await multipart.uploadPart(uploaded.length + 1, part.subarray(0, filled)));
      await multipart.complete(uploaded);
    } else {
      await bucket.put(key, part.subarray(0, filled), { httpMetadata: options.httpMetadata });
    }
  } catch (err) {
    await reader.cancel().catch(() => {});
    await multipart?.abort().catch(() => {});
    throw err;
  }
  await hash.close();
  const sha256 = [...new Uint8Array(await digest.digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
  return { key, size, sha256 };
}
