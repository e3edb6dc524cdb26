/**
 * Uploads a file to the master as a blob named by its SHA-256, with the chunked API:
 *
 *  1. `HEAD /blobs/{sha}`: already stored? Then nothing is sent.
 *  2. `POST /blobs/{sha}/uploads {size}`: starts the upload, or resumes the one in progress
 *     (after a crash, a Ctrl-C, from another machine) with the list of parts the master holds.
 *  3. `PUT .../parts/{n}` for each missing part, a few at a time, streamed from the file with a
 *     Content-Length; each part is retried on its own after network errors or 5xx.
 *  4. `POST .../complete`: the master hashes what it received and records the blob only if the
 *     SHA-256 matches.
 *
 * Memory stays bounded whatever the file size: parts are streamed from disk, never read whole.
 */
import { createReadStream } from 'node:fs';
import { Transform } from 'node:stream';
import { FarmApiError, header, type HttpClient, type RetryPolicy } from '../../protocol/http-client.ts';
import type { BlobInfo, UploadState } from '../../protocol/schemas.ts';

/** A part of a big upload is worth more patience than a read: more tries, each retried on its own. */
export const UPLOAD_RETRY: RetryPolicy = { retries: 6, minDelayMs: 500, maxDelayMs: 15_000 };

interface UploadProgress {
  /** Bytes the master holds or has received in this run (skipped + sent). */
  doneBytes: number;
  totalBytes: number;
  /** Bytes sent in this run. */
  sentBytes: number;
  /** Bytes the master already had when this run started (resumed parts or a stored blob). */
  skippedBytes: number;
}

export interface UploadOptions {
  client: HttpClient;
  path: string;
  sha256: string;
  size: number;
  /** Parts in flight at once. */
  parallel?: number;
  signal?: AbortSignal;
  onProgress?: (progress: UploadProgress) => void;
  /** Told once the master answered what it has: the upload's layout and the parts to send. */
  onPlan?: (state: UploadState) => void;
}

export interface UploadResult {
  sha256: string;
  size: number;
  sentBytes: number;
  skippedBytes: number;
  partsSent: number;
  partsSkipped: number;
  /** The master had the whole blob before this run. */
  alreadyStored: boolean;
}

const partLength = (state: UploadState, n: number) => (n < state.part_count ? state.part_size : state.size - state.part_size * (state.part_count - 1));

/** Whether the master already holds the blob `sha256` (of `size` bytes). */
async function blobExists(client: HttpClient, sha256: string, size: number, signal?: AbortSignal): Promise<boolean> {
  try {
    const response = await client.request('HEAD', `/blobs/${sha256}`, { signal, policy: UPLOAD_RETRY });
    await response.body.dump();
    return Number(header(response, 'content-length')) === size;
  } catch (err) {
    if (err instanceof FarmApiError && err.status === 404) return false;
    throw err;
  }
}

/** Uploads `path` as blob `sha256`, resuming what the master already has. */
export async function uploadBlob(options: UploadOptions): Promise<UploadResult> {
  const { client, sha256, size, signal } = options;
  // Every call here may be repeated: the blob and its upload are named by the file's hash.
  const retry = { idempotent: true, policy: UPLOAD_RETRY, signal };
  if (await blobExists(client, sha256, size, signal)) {
    options.onProgress?.({ doneBytes: size, totalBytes: size, sentBytes: 0, skippedBytes: size });
    return { sha256, size, sentBytes: 0, skippedBytes: size, partsSent: 0, partsSkipped: 0, alreadyStored: true };
  }
  let sentBytes = 0;
  let partsSent = 0;
  for (let round = 0; ; round++) {
    try {
      const state = await client.json<UploadState>('POST', `/blobs/${sha256}/uploads`, { json: { size }, ...retry });
      if (state.blob_exists) {
        options.onProgress?.({ doneBytes: size, totalBytes: size, sentBytes, skippedBytes: size - sentBytes });
        return { sha256, size, sentBytes, skippedBytes: size - sentBytes, partsSent, partsSkipped: 0, alreadyStored: sentBytes === 0 };
      }
      options.onPlan?.(state);
      const done = new Set(state.parts_done);
      const skippedBytes = state.parts_done.reduce((sum, n) => sum + partLength(state, n), 0);
      const todo: number[] = [];
      for (let n = 1; n <= state.part_count; n++) if (!done.has(n)) todo.push(n);

      // Bytes of parts finished in this round, plus bytes streamed so far of parts in flight.
      let roundFinished = 0;
      const inFlight = new Map<number, number>();
      const report = () => {
        let streaming = 0;
        for (const b of inFlight.values()) streaming += b;
        const sent = sentBytes + roundFinished + streaming;
        options.onProgress?.({ doneBytes: skippedBytes + roundFinished + streaming, totalBytes: size, sentBytes: sent, skippedBytes });
      };
      report();

      const sendPart = async (n: number) => {
        const length = partLength(state, n);
        const start = (n - 1) * state.part_size;
        await client.retrying(
          `part ${n}`,
          async () => {
            inFlight.set(n, 0);
            const counter = new Transform({
              transform(chunk: Buffer, _encoding, next) {
                inFlight.set(n, (inFlight.get(n) ?? 0) + chunk.length);
                report();
                next(null, chunk);
              },
            });
            const body = createReadStream(options.path, { start, end: start + length - 1, highWaterMark: 256 * 1024 }).pipe(counter);
            try {
              const response = await client.send('PUT', `/blobs/${sha256}/uploads/${state.upload_id}/parts/${n}`, {
                headers: { 'content-type': 'application/octet-stream', 'content-length': String(length) },
                body,
                signal,
              });
              await response.body.dump();
            } catch (err) {
              inFlight.delete(n);
              body.destroy();
              throw err;
            }
          },
          retry,
        );
        inFlight.delete(n);
        roundFinished += length;
        partsSent++;
        report();
      };

      // A few parts at a time: enough to fill a link, bounded memory (each is a stream).
      const queue = [...todo];
      const workers = Array.from({ length: Math.max(1, Math.min(options.parallel ?? 3, queue.length)) }, async () => {
        for (let n = queue.shift(); n !== undefined; n = queue.shift()) await sendPart(n);
      });
      try {
        await Promise.all(workers);
      } finally {
        queue.length = 0;
        sentBytes += roundFinished;
      }
      const info = await client.json<BlobInfo>('POST', `/blobs/${sha256}/uploads/${state.upload_id}/complete`, retry);
      if (info.sha256 !== sha256 || info.size !== size)
        throw new Error(`the master recorded ${info.sha256} (${info.size} bytes), not ${sha256} (${size} bytes)`);
      return { sha256, size, sentBytes, skippedBytes, partsSent, partsSkipped: state.parts_done.length, alreadyStored: false };
    } catch (err) {
      // The master forgot the upload mid-way (aborted elsewhere, expired): start again, once or twice.
      if (err instanceof FarmApiError && err.status === 404 && round < 2) continue;
      throw err;
    }
  }
}
