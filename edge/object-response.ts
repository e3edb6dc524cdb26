/**
 * Streams R2 objects out of the master: as downloads (with `Range`, so an interrupted download
 * can resume) and into a digest.
 *
 * Large objects are read in ranges of `READ_CHUNK_BYTES`, one after the other, instead of with
 * one `get`: each read is short, and the memory a read can hold stays bounded by a chunk whatever
 * the object's size. (Under `wrangler dev`, reading a multipart object whole through the local R2
 * grew workerd by about the object's size; read in 4 MiB ranges, downloads stay flat.)
 */
import type { Context } from 'hono';
import { fail } from './errors.ts';

const READ_CHUNK_BYTES = 4 * 1024 * 1024;

/** Bytes `offset`..`offset + length - 1` of `key`, read a chunk at a time into one stream. */
function rangedBody(bucket: R2Bucket, key: string, offset: number, length: number, chunkBytes = READ_CHUNK_BYTES): ReadableStream<Uint8Array> {
  const { readable, writable } = new FixedLengthStream(length);
  const copy = async () => {
    for (let pos = offset; pos < offset + length; pos += chunkBytes) {
      const part = await bucket.get(key, { range: { offset: pos, length: Math.min(chunkBytes, offset + length - pos) } });
      if (!part) throw new Error(`${key} vanished while it was being read`);
      await part.body.pipeTo(writable, { preventClose: true });
    }
    await writable.close();
  };
  copy().catch((err: unknown) => writable.abort(err).catch(() => {}));
  return readable;
}

/** Pipes the whole object at `key` into `sink` (a DigestStream, say), a chunk at a time. */
export async function pipeObject(bucket: R2Bucket, key: string, size: number, sink: WritableStream, chunkBytes = READ_CHUNK_BYTES): Promise<void> {
  for (let pos = 0; pos < size; pos += chunkBytes) {
    const part = await bucket.get(key, { range: { offset: pos, length: Math.min(chunkBytes, size - pos) } });
    if (!part) fail(404, `the object ${key} vanished while it was being read`);
    await part.body.pipeTo(sink, { preventClose: true });
  }
  await sink.close();
}

/** Parses a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range; null for none; 416 for nonsense. */
function parseRange(header: string | undefined, size: number): { offset: number; length: number } | null {
  if (!header) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) fail(416, `unsupported Range "${header.slice(0, 100)}": send one range, like bytes=0-1023`);
  let start: number;
  let end: number;
  if (match[1] === '') {
    start = Math.max(0, size - Number(match[2]));
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  }
  if (start >= size || start > end) fail(416, `the range ${header.slice(0, 100)} is outside the ${size}-byte file`);
  return { offset: start, length: end - start + 1 };
}

/**
 * The object at `key` as an attachment named `fileName` (or shown inline with its content type,
 * as a browser's <video> wants it); 206 for a range; 404 when absent.
 */
export async function objectResponse(c: Context, bucket: R2Bucket, key: string, fileName: string, inline?: { contentType: string }): Promise<Response> {
  const head = await bucket.head(key);
  if (!head) fail(404, `no file named ${fileName}`);
  const headers = new Headers({
    'content-type': inline?.contentType ?? 'application/octet-stream',
    etag: head.httpEtag,
    'accept-ranges': 'bytes',
    'content-disposition': `${inline ? 'inline' : 'attachment'}; filename="${fileName}"`,
  });
  const range = parseRange(c.req.header('range'), head.size);
  if (range) {
    headers.set('content-range', `bytes ${range.offset}-${range.offset + range.length - 1}/${head.size}`);
    headers.set('content-length', String(range.length));
    return new Response(rangedBody(bucket, key, range.offset, range.length), { status: 206, headers });
  }
  headers.set('content-length', String(head.size));
  if (head.size === 0) return new Response(null, { headers });
  return new Response(rangedBody(bucket, key, 0, head.size), { headers });
}
