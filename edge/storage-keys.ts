/**
 * Where things live in R2. Every key is built here from validated parts (hashes, ids, frame
 * numbers), so no name from a request ever becomes a key unchecked.
 */
import { frameFileName } from '../protocol/schemas.ts';

export const blendFileName = (sha256: string) => `${sha256}.blend`;
export const blendKey = (sha256: string) => `jobs/${blendFileName(sha256)}`;

/** `download_blend` names: exactly what `blendFileName` or `inputFileName` produce. */
export const BLEND_FILE_NAME = /^[0-9a-f]{64}\.(blend|zip)$/;

/** A job's input as nodes download it: `<sha256>.blend`, or `<sha256>.zip` for a project. */
export const inputFileName = (sha256: string, kind: 'blend' | 'zip') => `${sha256}.${kind}`;

/**
 * A blob uploaded in parts completes to a key of its own upload, and the blobs row names the key
 * whose SHA-256 was verified: a bad upload of the same hash can never replace good bytes.
 */
export const blobUploadKey = (sha256: string, uploadId: string) => `blobs/${sha256}/${uploadId}`;

/**
 * Frames are stored under a key of their upload's lease (`uploadId` is the lease id, see
 * frame-store.ts) and the frames row names the one that counts, so an upload whose lease ended
 * mid-way never overwrites the bytes that the task's new holder stored for the same frame, and a
 * retry on the same lease replaces its own object. The last part is still the frame's file name.
 */
export const frameKey = (jobId: string, frame: number, ext: string, uploadId: string) =>
  `renders/${jobId}/${uploadId}/${frameFileName(frame, ext)}`;
export const logKey = (jobId: string, taskId: string, attempt: number) => `logs/${jobId}/${taskId}-${attempt}.log`;

/** A frame's preview (a small JPEG or PNG made by the node); one key per upload, like frames. */
export const previewKey = (jobId: string, frame: number, ext: 'jpg' | 'png', uploadId: string) =>
  `previews/${jobId}/${uploadId}/${frameFileName(frame, ext)}`;

/**
 * What a tile or video task produced (`PUT /tasks/{id}/output`): a tile's PNG or the job's preview
 * MP4, one key per lease like frames, named by the task so that a stitch finds each tile.
 */
export const taskOutputKey = (jobId: string, taskId: string, kind: 'tile' | 'video', leaseId: string) =>
  `outputs/${jobId}/${leaseId}/${kind === 'tile' ? `tile-${taskId}.png` : 'preview.mp4'}`;

/** Every prefix under which a job's own objects live: deleting a job deletes these. */
export const jobObjectPrefixes = (jobId: string) => [`renders/${jobId}/`, `previews/${jobId}/`, `logs/${jobId}/`, `outputs/${jobId}/`];
