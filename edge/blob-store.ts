/**
 * Blobs: files stored by SHA-256 (a .blend or a project .zip), uploaded in parts with R2
 * multipart uploads so that no request carries more than one part (Workers cap request bodies at
 * 100 MB on Free/Pro plans, and a part is streamed into R2 without being buffered).
 *
 * The upload's state lives in D1 (`blob_uploads`, `blob_upload_parts`), one upload per blob at a
 * time: a client that starts again, after a crash or from another machine, gets the same upload
 * back with the parts already stored, and sends only the others. Completing an upload streams the
 * assembled object through SHA-256; only bytes that hash to the name are recorded in `blobs`.
 */
import { MAX_PARTS, MIN_PART_BYTES, type BlobInfo, type UploadState } from '../protocol/schemas.ts';
import {
  blobRow,
  completeUploadRows,
  forgetUpload,
  insertUpload,
  recordPart,
  staleUploads,
  uploadById,
  uploadOf,
  uploadParts,
  type UploadRow,
} from './db/blobs.ts';
import type { FarmConfig } from './env.ts';
import { fail } from './errors.ts';
import { pipeObject } from './object-response.ts';
import { blendKey, blobUploadKey } from './storage-keys.ts';

/** R2 aborts multipart uploads left incomplete for 7 days; ours are restarted a day before. */
const UPLOAD_MAX_AGE_MS = 6 * 24 * 3600 * 1000;

export interface StoredBlob extends BlobInfo {
  key: string;
}

/**
 * The stored blob with this hash, or null. Blends stored by the seed's `POST /submit_job`
 * before the blobs table existed are found under their old key.
 */
export async function findBlob(db: D1Database, bucket: R2Bucket, sha256: string): Promise<StoredBlob | null> {
  const row = await blobRow(db, sha256);
  if (row) return { sha256: row.sha256, size: Number(row.size), key: row.key };
  const legacy = await bucket.head(blendKey(sha256));
  return legacy ? { sha256, size: legacy.size, key: legacy.key } : null;
}

/** Bytes per part for a blob of `size`: the preferred size, raised so that 10,000 parts suffice. */
function choosePartSize(size: number, preferred: number, config: FarmConfig): number {
  const mib = 1024 * 1024;
  let partSize = Math.max(MIN_PART_BYTES, Math.min(preferred, config.maxUploadBytes));
  partSize = Math.max(partSize, Math.ceil(size / MAX_PARTS / mib) * mib);
  if (partSize > config.maxUploadBytes) {
    fail(413, `a blob of ${size} bytes needs parts of ${partSize} bytes, over the ${config.maxUploadBytes}-byte request limit`);
  }
  return partSize;
}

/** Size of part `n` (1-based) of an upload. */
function partBytes(upload: Pick<UploadRow, 'size' | 'partSize' | 'partCount'>, n: number): number {
  return n < upload.partCount ? upload.partSize : upload.size - upload.partSize * (upload.partCount - 1);
}

async function partsDone(db: D1Database, uploadId: string): Promise<number[]> {
  return (await uploadParts(db, uploadId)).map((p) => p.partNumber);
}

function describeUpload(upload: UploadRow, done: number[]): UploadState {
  return {
    sha256: upload.sha256,
    size: Number(upload.size),
    upload_id: upload.id,
    part_size: upload.partSize,
    part_count: upload.partCount,
    parts_done: done,
    blob_exists: false,
  };
}

/** Forgets an upload and tells R2 to drop its parts. */
async function dropUpload(db: D1Database, bucket: R2Bucket, upload: UploadRow): Promise<void> {
  await forgetUpload(db, upload.id);
  try {
    await bucket.resumeMultipartUpload(upload.key, upload.r2UploadId).abort();
  } catch (err) {
    // Already completed or expired in R2: nothing is left to free.
    console.warn(`aborting R2 upload ${upload.r2UploadId}: ${String(err)}`);
  }
}

/**
 * Starts the upload of blob `sha256`, or resumes the one in progress. Answers `blob_exists` when
 * the master has the blob already: nothing needs to be sent.
 */
export async function startUpload(
  db: D1Database,
  bucket: R2Bucket,
  config: FarmConfig,
  sha256: string,
  request: { size: number; part_size?: number },
): Promise<{ state: UploadState; created: boolean }> {
  const existing = await findBlob(db, bucket, sha256);
  if (existing) {
    if (existing.size !== request.size) {
      fail(400, `blob ${sha256} is stored with ${existing.size} bytes, not ${request.size}: the size or the hash is wrong`);
    }
    const state = { sha256, size: existing.size, upload_id: null, part_size: 0, part_count: 0, parts_done: [], blob_exists: true };
    return { state, created: false };
  }
  if (request.size > config.maxBlobBytes) {
    fail(413, `a blob of ${request.size} bytes is over this master's limit of ${config.maxBlobBytes} bytes (MAX_BLOB_BYTES)`);
  }
  const now = Date.now();
  const current = await uploadOf(db, sha256);
  if (current) {
    // The same hash with another size cannot be the same file; an old upload R2 may have expired.
    if (Number(current.size) === request.size && now - current.createdAt < UPLOAD_MAX_AGE_MS) {
      return { state: describeUpload(current, await partsDone(db, current.id)), created: false };
    }
    await dropUpload(db, bucket, current);
  }

  const partSize = choosePartSize(request.size, request.part_size ?? config.blobPartBytes, config);
  const partCount = Math.max(1, Math.ceil(request.size / partSize));
  const id = crypto.randomUUID();
  const key = blobUploadKey(sha256, id);
  const multipart = await bucket.createMultipartUpload(key);
  const row: UploadRow = { id, sha256, size: request.size, partSize, partCount, key, r2UploadId: multipart.uploadId, createdAt: now, updatedAt: now };
  if (!(await insertUpload(db, row))) {
    // Another client started this blob at the same moment: theirs is the upload to resume.
    await multipart.abort().catch(() => {});
    const winner = await uploadOf(db, sha256);
    if (!winner) fail(409, `the upload of blob ${sha256} changed while starting it; start it again`);
    return { state: describeUpload(winner, await partsDone(db, winner.id)), created: false };
  }
  return { state: describeUpload(row, []), created: true };
}

/** The upload `uploadId` of blob `sha256`, or a 404 that says how to go on. */
export async function requireUpload(db: D1Database, sha256: string, uploadId: string): Promise<UploadRow> {
  const upload = await uploadById(db, sha256, uploadId);
  if (!upload) {
    fail(404, `no upload ${uploadId} of blob ${sha256} is in progress (completed, aborted or expired): start it again with POST /blobs/${sha256}/uploads`);
  }
  return upload;
}

/**
 * Stores part `n` of an upload from a request body of exactly the part's size, streamed into R2.
 * A part sent again replaces the first copy.
 */
export async function storePart(
  db: D1Database,
  bucket: R2Bucket,
  upload: UploadRow,
  n: number,
  body: ReadableStream<Uint8Array>,
  length: number,
): Promise<{ part_number: number; size: number }> {
  if (n < 1 || n > upload.partCount) fail(400, `part number must be from 1 to ${upload.partCount} for this upload`);
  const expected = partBytes(upload, n);
  if (length !== expected) fail(400, `part ${n} must be exactly ${expected} bytes (got a Content-Length of ${length})`);
  let etag: string;
  try {
    ({ etag } = await bucket.resumeMultipartUpload(upload.key, upload.r2UploadId).uploadPart(n, body));
  } catch (err) {
    const text = String(err);
    if (/NoSuchUpload|does not exist|not found/i.test(text)) {
      fail(404, `R2 no longer has upload ${upload.id} (expired or completed); start it again with POST /blobs/${upload.sha256}/uploads`);
    }
    // "Network connection lost" is what R2 says when the client stops sending mid-part.
    if (/length|stream|body|disconnect|closed|aborted|network connection lost/i.test(text))
      fail(400, `part ${n} ended before its Content-Length: send the whole part again`);
    throw err;
  }
  const recorded = await recordPart(db, { uploadId: upload.id, partNumber: n, size: expected, etag, createdAt: Date.now() });
  if (!recorded) fail(404, `upload ${upload.id} was completed or aborted while part ${n} was arriving`);
  return { part_number: n, size: expected };
}

function hex(buffer: ArrayBuffer): string {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * SHA-256 of a stored object, streamed through workerd's DigestStream a range at a time
 * (bounded memory; about 1 s of CPU per few hundred MB, see docs/api.md, Blob endpoints).
 */
async function digestObject(bucket: R2Bucket, key: string): Promise<{ sha256: string; size: number }> {
  const head = await bucket.head(key);
  if (!head) fail(404, `the object ${key} is gone`);
  const digest = new crypto.DigestStream('SHA-256');
  await pipeObject(bucket, key, head.size, digest);
  return { sha256: hex(await digest.digest), size: head.size };
}

/**
 * Completes an upload once every part is stored: R2 assembles the object, the master hashes it,
 * and only a match is recorded as the blob. A mismatch deletes everything and answers 400.
 */
export async function completeUpload(db: D1Database, bucket: R2Bucket, upload: UploadRow): Promise<StoredBlob> {
  const parts = await uploadParts(db, upload.id);
  const have = new Set(parts.map((p) => p.partNumber));
  const missing: number[] = [];
  for (let n = 1; n <= upload.partCount; n++) if (!have.has(n)) missing.push(n);
  if (missing.length > 0) {
    fail(
      409,
      `upload ${upload.id} is missing ${missing.length} part(s) (${missing.slice(0, 20).join(', ')}${missing.length > 20 ? ', …' : ''}); send them, then complete`,
    );
  }
  const multipart = bucket.resumeMultipartUpload(upload.key, upload.r2UploadId);
  try {
    await multipart.complete(parts.map((p) => ({ partNumber: p.partNumber, etag: p.etag })));
  } catch (err) {
    // A complete asked again after its answer was lost (a dropped connection, a master that
    // restarted while hashing): R2 assembled the object the first time; verify and record it now.
    const blob = await findBlob(db, bucket, upload.sha256);
    if (blob) return blob;
    const assembled = await bucket.head(upload.key);
    if (!assembled || assembled.size !== Number(upload.size)) {
      fail(409, `R2 could not complete upload ${upload.id} (${String(err).slice(0, 200)}); if another request is completing it, ask again in a moment`);
    }
  }
  const got = await digestObject(bucket, upload.key);
  const now = Date.now();
  if (got.sha256 !== upload.sha256 || got.size !== Number(upload.size)) {
    await bucket.delete(upload.key);
    await forgetUpload(db, upload.id);
    fail(
      400,
      `the uploaded bytes (${got.size} bytes) have SHA-256 ${got.sha256}, not ${upload.sha256}: the file changed while it was uploading, or a part was corrupted. Nothing was kept; upload it again`,
    );
  }
  const blob: StoredBlob = { sha256: upload.sha256, size: got.size, key: upload.key };
  await completeUploadRows(db, upload.id, blob, now);
  const recorded = await findBlob(db, bucket, upload.sha256);
  if (recorded && recorded.key !== blob.key) await bucket.delete(blob.key); // an equal blob was recorded first
  return recorded ?? blob;
}

/** Aborts an upload: R2 drops the parts and the master forgets it. */
export async function abortUpload(db: D1Database, bucket: R2Bucket, upload: UploadRow): Promise<void> {
  await dropUpload(db, bucket, upload);
}

/** Stale uploads aborted per cron run: each costs a D1 batch and an R2 abort. */
const STALE_UPLOADS_PER_RUN = 3;

/**
 * The cron's sweep of chunked uploads left unfinished: one that received no part for
 * `staleUploadMs`, or that is older than UPLOAD_MAX_AGE_MS (R2 drops it at 7 days anyway), is
 * aborted in R2 and forgotten, a few per run. A client that comes back starts it again (404 names
 * how). With nothing stale, one query that reads only the uploads in progress.
 * @returns how many uploads were aborted
 */
export async function abortStaleUploads(db: D1Database, bucket: R2Bucket, staleUploadMs: number, now: number): Promise<number> {
  const results = await staleUploads(db, now - staleUploadMs, now - UPLOAD_MAX_AGE_MS, STALE_UPLOADS_PER_RUN);
  for (const upload of results) await dropUpload(db, bucket, upload);
  if (results.length > 0) console.warn(`aborted ${results.length} chunked upload(s) that received no part for ${staleUploadMs / 3_600_000} h`);
  return results.length;
}
