/**
 * Projects stored file by file: a manifest (protocol/manifest.ts) is kept as a blob named by the
 * hash of its canonical text, its files listed in `manifest_files`. `POST /manifests` stores it and
 * answers which of its blobs the master lacks; the client uploads those through the chunked blob
 * upload (blob-store.ts) and then creates the job (`POST /jobs`, kind "manifest"), which checks that
 * every blob is there. Blobs are shared by content across jobs and submitters; a blob stays while
 * any live job's manifest names it (input-retention.ts).
 */
import { canonicalManifest, manifestBytes, manifestOverLimits, manifestSha256, type Manifest, type ManifestResponse } from '../protocol/manifest.ts';
import type { JobStatusResponse } from '../protocol/schemas.ts';
import { findBlob } from './blob-store.ts';
import { manifestCheck, manifestFileBlob, manifestFileList, manifestRow, missingBlobs, recordManifest, type ManifestRow } from './db/manifests.ts';
import type { FarmConfig } from './env.ts';
import { fail } from './errors.ts';
import { manifestKey } from './storage-keys.ts';

/** SHA-256 of no bytes: an empty file needs no upload (uploads are at least a byte). */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** D1 caps one bound value at 2 MB; file lists go in as JSON pages below that. */
const FILES_JSON_PAGE_BYTES = 1_000_000;

/** Pages of the file list as JSON arrays, each small enough to bind as one value. */
function filePages(manifest: Manifest): string[] {
  const pages: string[] = [];
  let page: string[] = [];
  let bytes = 0;
  for (const f of manifest.files) {
    const item = JSON.stringify([f.path, f.sha256, f.size]);
    if (bytes + item.length > FILES_JSON_PAGE_BYTES && page.length > 0) {
      pages.push(`[${page.join(',')}]`);
      page = [];
      bytes = 0;
    }
    page.push(item);
    bytes += item.length + 1;
  }
  if (page.length > 0) pages.push(`[${page.join(',')}]`);
  return pages;
}

/**
 * Stores a validated manifest (idempotent: the same project gives the same hash and rows) and
 * answers which blobs still need an upload. Refuses with 413 one over MAX_ARCHIVE_FILES or
 * MAX_ARCHIVE_BYTES, the caps of project archives, and with 400 a blob that cannot be what it claims.
 */
export async function storeManifest(db: D1Database, bucket: R2Bucket, config: FarmConfig, manifest: Manifest, now = Date.now()): Promise<ManifestResponse> {
  const over = manifestOverLimits(manifest, { maxFiles: config.maxArchiveFiles, maxBytes: config.maxArchiveBytes });
  if (over) fail(413, `${over} (MAX_ARCHIVE_FILES, MAX_ARCHIVE_BYTES)`);
  for (const f of manifest.files) {
    if ((f.size === 0) !== (f.sha256 === EMPTY_SHA256)) {
      fail(400, `file "${f.path.slice(0, 200)}": size ${f.size} does not go with SHA-256 ${f.sha256} (only an empty file has the empty hash)`);
    }
    if (f.size > config.maxBlobBytes)
      fail(413, `file "${f.path.slice(0, 200)}" has ${f.size} bytes, over this master's limit of ${config.maxBlobBytes} bytes per file (MAX_BLOB_BYTES)`);
  }
  const text = canonicalManifest(manifest);
  const sha256 = await manifestSha256(text);
  const total = manifestBytes(manifest);

  // Empty files are never uploaded; the master holds the one empty blob itself.
  const stored: { sha256: string; key: string; size: number }[] = [];
  if (!(await findBlob(db, bucket, sha256))) {
    await bucket.put(manifestKey(sha256), text);
    stored.push({ sha256, key: manifestKey(sha256), size: new TextEncoder().encode(text).length });
  }
  if (manifest.files.some((f) => f.size === 0) && !(await findBlob(db, bucket, EMPTY_SHA256))) {
    await bucket.put(manifestKey(EMPTY_SHA256), new Uint8Array(0));
    stored.push({ sha256: EMPTY_SHA256, key: manifestKey(EMPTY_SHA256), size: 0 });
  }
  await recordManifest(db, { sha256, mainBlend: manifest.main_blend, fileCount: manifest.files.length, totalBytes: total }, filePages(manifest), stored, now);
  const missing = await missingBlobs(db, sha256);
  return {
    manifest_sha256: sha256,
    files: manifest.files.length,
    total_bytes: total,
    missing,
    missing_bytes: missing.reduce((sum, b) => sum + b.size, 0),
  };
}

/**
 * The manifest a job is to be created from, once every blob it names is stored with the size the
 * manifest gives; 404 when the manifest is unknown, 409 naming what is missing. Returns the row and
 * the bytes uploaded since the manifest was last posted: what this submission sent.
 */
export async function requireCompleteManifest(db: D1Database, sha256: string): Promise<{ manifest: ManifestRow; sentBytes: number }> {
  const manifest = await manifestRow(db, sha256);
  if (!manifest) fail(404, `no manifest ${sha256} on this master: send it first (POST /manifests, or \`farm submit\`)`);
  const missing = await missingBlobs(db, sha256);
  if (missing.length > 0) {
    fail(
      409,
      `manifest ${sha256.slice(0, 12)} names ${missing.length} blob(s) the master lacks (${missing
        .slice(0, 5)
        .map((b) => b.sha256.slice(0, 12))
        .join(', ')}${missing.length > 5 ? ', …' : ''}): upload them first (POST /blobs/{sha256}/uploads)`,
    );
  }
  const row = await manifestCheck(db, sha256, manifest.checked_at);
  if (row && row.wrong_size > 0)
    fail(400, `manifest ${sha256.slice(0, 12)} gives ${row.wrong_size} file(s) a size other than that of the stored blob with their hash`);
  return { manifest, sentBytes: Number(row?.sent ?? 0) };
}

/** The stored blob of a manifest's main .blend, for the header check at submission. */
export async function mainBlendBlob(db: D1Database, manifest: ManifestRow): Promise<{ sha256: string; key: string } | null> {
  return (await manifestFileBlob(db, manifest.sha256, manifest.main_blend)) ?? null;
}

/** A job's files for `GET /jobs/{id}`: a manifest's list, or the one .blend or .zip. */
export async function jobInputs(
  db: D1Database,
  job: { input_kind: string; blend_file: string; blend_sha256: string; blend_size: number; input_sent_bytes?: number | null },
): Promise<NonNullable<JobStatusResponse['inputs']>> {
  if (job.input_kind !== 'manifest') {
    const kind = job.input_kind === 'zip' ? 'zip' : 'blend';
    return {
      kind,
      files: [{ path: job.blend_file, sha256: job.blend_sha256, size: Number(job.blend_size) }],
      total_bytes: Number(job.blend_size),
      sent_bytes: null,
    };
  }
  const files = (await manifestFileList(db, job.blend_sha256)).map((f) => ({ ...f, size: Number(f.size) }));
  return { kind: 'manifest', files, total_bytes: files.reduce((sum, f) => sum + f.size, 0), sent_bytes: job.input_sent_bytes ?? null };
}
