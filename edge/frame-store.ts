/**
 * Storing a rendered frame: the object goes to R2 under a key built from validated parts, then
 * one D1 batch records it, conditioned on the uploader still holding the task's lease. Each lease
 * has its own keys, so an upload that lost its lease is deleted without touching the frame stored by
 * the new holder, and a retried upload on the same lease overwrites its own object instead of
 * leaving an orphan. A repeated upload of the same frame replaces the row and deletes the object it
 * replaced: one frame, counted once.
 */
import { FRAME_CONTENT_TYPES, FRAME_EXTENSIONS, type FrameInfo } from '../protocol/schemas.ts';
import { fail } from './errors.ts';
import { frameNames, recordFrame } from './db/frames.ts';
import { loadTask } from './db/tasks.ts';
import { assertLease, assertTaskFrame } from './task-lease.ts';
import { frameKey } from './storage-keys.ts';
import { unknownWorker } from './workers-registry.ts';

/** Checks a frame file extension against the allowed image types. */
export function frameExtension(value: string | undefined | null): string {
  const ext = (value ?? '').toLowerCase();
  if (!(FRAME_EXTENSIONS as readonly string[]).includes(ext)) {
    fail(400, `the frame's file type "${ext.slice(0, 20)}" is not one of ${FRAME_EXTENSIONS.join(', ')}`);
  }
  return ext;
}

export interface FrameUpload {
  workerId: string;
  taskId: string;
  leaseId: string;
  frame: number;
  ext: string;
  body: ReadableStream | ArrayBuffer | Uint8Array;
  /** Says whether a streamed body was cut off by the client (see request-body.ts). */
  cutShort?: () => boolean;
  /** Hex SHA-256 from the node; R2 verifies it while storing. Computed here when absent. */
  sha256: string | null;
  renderMs: number | null;
  /** The master's LEASE_MS: the node's `last_seen_at` is rewritten once that old (db/workers.ts touchStatements). */
  leaseMs: number;
}

export function frameUrl(jobId: string, frame: number): string {
  return `/jobs/${jobId}/frames/${frame}`;
}

/** Stores one frame of a leased task and returns what the frames list will show for it. */
export async function storeFrame(db: D1Database, bucket: R2Bucket, upload: FrameUpload): Promise<FrameInfo & { job_id: string; completed_frames: number }> {
  const task = assertLease(await loadTask(db, upload.taskId), upload.taskId, upload.workerId, upload.leaseId, true);
  if (task.kind === 'tile' || task.kind === 'video') {
    fail(409, `task ${upload.taskId} is a ${task.kind} task: it uploads its output (PUT /tasks/${upload.taskId}/output), not frames`);
  }
  assertTaskFrame(task, upload.frame);
  // Keyed by the lease: a retry of this upload (say, after the master restarted between storing
  // the object and recording it) writes the same key instead of leaving an orphan behind, while an
  // upload on a lost lease can still never overwrite what the task's new holder stored.
  const key = frameKey(task.job_id, upload.frame, upload.ext, upload.leaseId);
  const contentType = FRAME_CONTENT_TYPES[upload.ext as keyof typeof FRAME_CONTENT_TYPES];
  let stored: R2Object | null;
  try {
    stored = await bucket.put(key, upload.body, {
      httpMetadata: { contentType },
      ...(upload.sha256 ? { sha256: upload.sha256 } : {}),
    });
  } catch (err) {
    if (upload.sha256 && /checksum|sha-?256|digest/i.test(String(err))) {
      fail(400, `the uploaded bytes do not match the SHA-256 the node sent (${upload.sha256}): the upload was corrupted, send it again`);
    }
    if (upload.cutShort?.() || /length|stream/i.test(String(err))) {
      fail(400, `the upload ended before its Content-Length (the connection was cut, or the body is short): send the whole file`);
    }
    throw err;
  }
  if (!stored) fail(500, 'R2 did not store the frame');
  const sha256 = upload.sha256 ?? (stored.checksums.sha256 ? hex(stored.checksums.sha256) : await digestObject(bucket, key));
  // The node is seen now, in the batch that records the frame rather than a round trip of its own.
  const { worker, recorded, replaced, completedFrames } = await recordFrame(
    db,
    { ...upload, jobId: task.job_id, key, size: stored.size, sha256, contentType },
    Date.now(),
    upload.leaseMs,
  );
  if (!worker) unknownWorker(upload.workerId);
  if (!recorded) {
    // Not recorded by this upload. The key is this lease's, so a frames row names it only if an
    // earlier upload on the same lease recorded it (this one was a retry): that object stays.
    await deleteUnlessRecorded(db, bucket, task.job_id, upload.frame, key);
    fail(409, `lease ${upload.leaseId} of task ${upload.taskId} ended while the frame was uploading; the frame was not recorded`);
  }
  if (replaced && replaced !== key) {
    await bucket.delete(replaced).catch((err) => console.error(`deleting replaced frame ${replaced}:`, err));
  }
  return {
    job_id: task.job_id,
    frame: upload.frame,
    size: stored.size,
    sha256,
    content_type: contentType,
    file_name: key.split('/').pop()!,
    url: frameUrl(task.job_id, upload.frame),
    render_ms: upload.renderMs,
    worker_id: upload.workerId,
    completed_frames: completedFrames,
  };
}

/** Deletes a frame object unless a frames row names it (a late retry must not delete a recorded frame). */
async function deleteUnlessRecorded(db: D1Database, bucket: R2Bucket, jobId: string, frame: number, key: string): Promise<void> {
  try {
    if (!(await frameNames(db, jobId, frame, key))) await bucket.delete(key);
  } catch (err) {
    console.error(`deleting unrecorded upload ${key}:`, err);
  }
}

export function hex(buffer: ArrayBuffer): string {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** Hashes a stored object by streaming it, for uploads that came without a hash. */
export async function digestObject(bucket: R2Bucket, key: string): Promise<string> {
  const object = await bucket.get(key);
  if (!object) fail(500, 'the stored frame vanished');
  const digest = new crypto.DigestStream('SHA-256');
  await object.body.pipeTo(digest);
  return hex(await digest.digest);
}
