/**
 * Where things live in R2. Every key is built here from validated parts (hashes, ids, frame
 * numbers), so no name from a request ever becomes a key unchecked.
 */
import { frameFileName, type InputKind } from '../protocol/schemas.ts';

export const blendFileName = (sha256: string) => `${sha256}.blend`;
export const blendKey = (sha256: string) => `jobs/${blendFileName(sha256)}`;

/** `download_blend` names: exactly what `blendFileName` or `inputFileName` produce. */
export const BLEND_FILE_NAME = /^[0-9a-f]{64}\.(blend|zip|manifest)$/;

/**
 * A job's input as nodes download it: `<sha256>.blend`, `<sha256>.zip` for a project archive, or
 * `<sha256>.manifest` for a project stored file by file (its files come from /manifests/...).
 */
export const inputFileName = (sha256: string, kind: InputKind) => `${sha256}.${kind}`;

/** A manifest's canonical text (it is a blob; the blobs row names this key). */
export const manifestKey = (sha256: string) => `blobs/${sha256}/manifest`;

/**
 * A blob uploaded in parts completes to a key of its own upload, and the blobs row names the key
 * whose SHA-256 was verified: a bad upload of the same hash can never replace good bytes.
 */
export const blobUploadKey = (sha256: string, uploadId: string) => `blobs/${sha256}/${uploadId}`;

/**
 * A .blend streamed in the seed's multipart `POST /submit_job`, stored before its hash is known
 * (`uploadId` is fresh per request); the blobs row names it, as it does a chunked upload's key.
 */
export const submittedBlobKey = (uploadId: string) => `blobs/submitted/${uploadId}`;

/**
 * A frame streamed in the seed's multipart `POST /upload_result`, held until the form's fields say
 * which task and lease it belongs to, then copied to its frame key and deleted.
 */
export const pendingFrameKey = (uploadId: string) => `uploads/${uploadId}`;

/**
 * Frames are stored under a key of their upload's lease (`uploadId` is the lease id, see
 * frame-store.ts) and the frames row names the one that counts, so an upload whose lease ended
 * mid-way never overwrites the bytes that the task's new holder stored for the same frame, and a
 * retry on the same lease replaces its own object. The last part is still the frame's file name.
 */
export const frameKey = (jobId: string, frame: number, ext: string, uploadId: string) => `renders/${jobId}/${uploadId}/${frameFileName(frame, ext)}`;
export const logKey = (jobId: string, taskId: string, attempt: number) => `logs/${jobId}/${taskId}-${attempt}.log`;

/** A frame's preview (a small JPEG or PNG made by the node); one key per upload, like frames. */
export const previewKey = (jobId: string, frame: number, ext: 'jpg' | 'png', uploadId: string) => `previews/${jobId}/${uploadId}/${frameFileName(frame, ext)}`;

/**
 * What a tile or video task produced (`PUT /tasks/{id}/output`): a tile's PNG or the job's preview
 * MP4, one key per lease like frames, named by the task so that a stitch finds each tile.
 */
export const taskOutputKey = (jobId: string, taskId: string, kind: 'tile' | 'video', leaseId: string) =>
  `outputs/${jobId}/${leaseId}/${kind === 'tile' ? `tile-${taskId}.png` : 'preview.mp4'}`;

/** Every prefix under which a job's own objects live: deleting a job deletes these. */
export const jobObjectPrefixes = (jobId: string) => [`renders/${jobId}/`, `previews/${jobId}/`, `logs/${jobId}/`, `outputs/${jobId}/`];

/** What an R2 key holds and which D1 row must name it, read back from the layout above. */
export type ParsedKey =
  | { kind: 'frame' | 'preview'; jobId: string; frame: number }
  | { kind: 'log'; jobId: string; taskId: string }
  | { kind: 'tile'; jobId: string; taskId: string }
  | { kind: 'video'; jobId: string }
  /** A stored input (a chunked upload's or a submitted .blend's): named by its blobs row's r2_key. */
  | { kind: 'blob' }
  /** A .blend the seed's submit stored before the blobs table: named by a blobs row or by a job. */
  | { kind: 'legacy_blend'; sha256: string }
  /** A frame held while its form is read: copied and deleted by the request, never named. */
  | { kind: 'pending_frame' };

const FRAME_FILE = /^frame_(-?)(\d{6,})\.[a-z0-9]+$/;

/** Reads a key built by the functions above; null for a key this layout does not make (left alone). */
export function parseObjectKey(key: string): ParsedKey | null {
  const parts = key.split('/');
  const [top, a, b, c] = parts;
  if (!a) return null;
  if (parts.length === 4 && (top === 'renders' || top === 'previews') && b) {
    const m = FRAME_FILE.exec(c!);
    if (!m) return null;
    return { kind: top === 'renders' ? 'frame' : 'preview', jobId: a, frame: (m[1] ? -1 : 1) * Number(m[2]) };
  }
  if (parts.length === 3 && top === 'logs') {
    const m = /^(.+)-\d+\.log$/.exec(b!);
    return m ? { kind: 'log', jobId: a, taskId: m[1]! } : null;
  }
  if (parts.length === 4 && top === 'outputs' && b) {
    if (c === 'preview.mp4') return { kind: 'video', jobId: a };
    const m = /^tile-(.+)\.png$/.exec(c!);
    return m ? { kind: 'tile', jobId: a, taskId: m[1]! } : null;
  }
  if (parts.length === 3 && top === 'blobs' && b) return { kind: 'blob' };
  if (parts.length === 2 && top === 'uploads') return { kind: 'pending_frame' };
  if (parts.length === 2 && top === 'jobs') {
    const m = /^([0-9a-f]{64})\.blend$/.exec(a);
    return m ? { kind: 'legacy_blend', sha256: m[1]! } : null;
  }
  return null;
}
