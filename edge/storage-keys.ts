/**
 * Where things live in R2. Every key is built here from validated parts (hashes, ids, frame
 * numbers), so no name from a request ever becomes a key unchecked.
 */
import { frameFileName } from '../protocol/schemas.ts';

export const blendFileName = (sha256: string) => `${sha256}.blend`;
export const blendKey = (sha256: string) => `jobs/${blendFileName(sha256)}`;

/** `download_blend` names: exactly what `blendFileName` produces. */
export const BLEND_FILE_NAME = /^[0-9a-f]{64}\.blend$/;

/**
 * Every upload of a frame gets a key of its own (`uploadId`) and the frames row names the one
 * that counts, so an upload whose lease ended mid-way never overwrites the bytes that the task's
 * new holder stored for the same frame. The last part is still the frame's file name.
 */
export const frameKey = (jobId: string, frame: number, ext: string, uploadId: string) =>
  `renders/${jobId}/${uploadId}/${frameFileName(frame, ext)}`;
export const logKey = (jobId: string, taskId: string, attempt: number) => `logs/${jobId}/${taskId}-${attempt}.log`;
