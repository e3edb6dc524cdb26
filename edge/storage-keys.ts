/**
 * Where things live in R2. Every key is built here from validated parts (hashes, ids, frame
 * numbers), so no name from a request ever becomes a key unchecked.
 */
import { frameFileName } from '../protocol/schemas.ts';

export const blendFileName = (sha256: string) => `${sha256}.blend`;
export const blendKey = (sha256: string) => `jobs/${blendFileName(sha256)}`;

/** `download_blend` names: exactly what `blendFileName` produces. */
export const BLEND_FILE_NAME = /^[0-9a-f]{64}\.blend$/;

export const frameKey = (jobId: string, frame: number, ext: string) => `renders/${jobId}/${frameFileName(frame, ext)}`;
export const logKey = (jobId: string, taskId: string, attempt: number) => `logs/${jobId}/${taskId}-${attempt}.log`;
