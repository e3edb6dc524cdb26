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
import { AbortError } from 'p-retry';
import type { BlobInfo, UploadState } from '../../protocol/schemas.ts';
import { callJson, FarmHttpError, retrying, send, type MasterConnection } from './http.ts';

export interface UploadProgress {
  /** Bytes the master holds or has received in this run (skipped + sent). */
  doneBytes: number;
  totalBytes: number;
  /** Bytes sent in this run. */
  sentBytes: number;
  /** Bytes the master already had when this run started (resumed parts or a stored blob). */
  skippedBytes: number;
}

export interface UploadOptions {
  conn: MasterConnection;
  path: string;
  sha256: string;
  size: number;
  /** Parts in flight at once. */
  parallel?: number;
  signal?: AbortSignal;
  onProgress?: (progress: UploadProgress) => void;
  /** Told once the master answered what it has: the upload's layout and the parts to send. */
  onPlan?: (state: UploadState) => void;
  onRetry?: (what: string, error: Error, delayMs: number) => void;
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

/** Thrown inside when the master forgot the upload (aborted, expired): start it again. */
class UploadGone extends Error {}

const partLength = (state: UploadState, n: number) =>
  n < state.part_count ? state.part_size : state.size - state.part_size * (state.part_count - 1);

/** Whether the master already holds the blob `sha256` (of `size` bytes). */
export async function blobExists(conn: MasterConnection, sha256: string, size: number, signal?: AbortSignal): Promise<boolean> {
  return retrying(async () => {
    try {
      const response = await send(conn, 'HEAD', `/blobs/${sha256}`, { signal });
      await response.body.dump();
      return Number(response.headers['content-length']) === size;
    } catch (err) {
      const inner = (err as { originalError?: unknown }).originalError ?? err;
      if (inner instanceof FarmHttpError && inner.status === 404) return false;
      throw err;
    }
  }, signal);
}

/** Uploads `path` as blob `sha256`, resuming what the master already has. */
export async function uploadBlob(options: UploadOptions): Promise<UploadResult> {
  const { conn, sha256, size, signal } = options;
  if (await blobExists(conn, sha256, size, signal)) {
    options.onProgress?.({ doneBytes: size, totalBytes: size, sentBytes: 0, skippedBytes: size });
    return { sha256, size, sentBytes: 0, skippedBytes: size, partsSent: 0, partsSkipped: 0, alreadyStored: true };
  }
  let sentBytes = 0;
  let partsSent = 0;
  for (let round = 0; ; round++) {
    try {
      const retried = (what: string) => (error: Error, delayMs: number) => options.onRetry?.(what, error, delayMs);
      const state = await callJson<UploadState>(conn, 'POST', `/blobs/${sha256}/uploads`, { size }, signal, retried('starting the upload'));
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
        await retrying(
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
              const response = await send(conn, 'PUT', `/blobs/${sha256}/uploads/${state.upload_id}/parts/${n}`, {
                headers: { 'content-type': 'application/octet-stream', 'content-length': String(length) },
                body,
                signal,
              });
              await response.body.dump();
            } catch (err) {
              inFlight.delete(n);
              body.destroy();
              const inner = (err as { originalError?: unknown }).originalError ?? err;
              // Not retried here: the whole upload starts again (see below).
              if (inner instanceof FarmHttpError && inner.status === 404) throw new AbortError(new UploadGone(inner.message));
              throw err;
            }
          },
          signal,
          (error, delayMs) => options.onRetry?.(`part ${n}`, error, delayMs),
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
      const info = await callJson<BlobInfo>(conn, 'POST', `/blobs/${sha256}/uploads/${state.upload_id}/complete`, undefined, signal, retried('completing the upload'));
      if (info.sha256 !== sha256 || info.size !== size) throw new Error(`the master recorded ${info.sha256} (${info.size} bytes), not ${sha256} (${size} bytes)`);
      return { sha256, size, sentBytes, skippedBytes, partsSent, partsSkipped: state.parts_done.length, alreadyStored: false };
    } catch (err) {
      const inner = (err as { originalError?: unknown }).originalError ?? err;
      // The master forgot the upload mid-way (aborted elsewhere, expired): start again, once or twice.
      const gone = inner instanceof UploadGone || (inner instanceof FarmHttpError && inner.status === 404);
      if (gone && round < 2) continue;
      throw inner instanceof Error ? inner : err;
    }
  }
}
