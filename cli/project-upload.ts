/**
 * Sending a project file by file (protocol/manifest.ts): every file of the bundle plan is hashed,
 * the manifest goes to the master (`POST /manifests`), and only the files it says it lacks are
 * uploaded, each with the chunked, resumable blob upload. A resubmission after a tweak to the
 * .blend sends the .blend alone; an unchanged one sends the manifest and nothing else.
 */
import { stat } from 'node:fs/promises';
import { MANIFEST_VERSION, type Manifest, type ManifestResponse } from '../protocol/manifest.ts';
import { sha256OfFile, type BundlePlan } from './bundle.ts';
import type { HttpClient } from '../protocol/http-client.ts';
import { uploadBlob, UPLOAD_RETRY } from './upload/blob-upload.ts';
import { createProgress } from './upload/progress.ts';

export interface ProjectUpload {
  manifestSha256: string;
  /** Bytes of all the project's files. */
  totalBytes: number;
  /** Bytes of file content sent in this run. */
  sentBytes: number;
  /** Files the master lacked, and uploaded now. */
  filesSent: number;
  files: number;
}

/** The manifest of `plan`: each file's path in the project, SHA-256 and size, read from disk. */
async function manifestOf(plan: BundlePlan, onBytes?: (bytes: number) => void): Promise<{ manifest: Manifest; sources: Map<string, string> }> {
  const sources = new Map<string, string>();
  const files: Manifest['files'] = [];
  let done = 0;
  for (const entry of plan.entries) {
    const { size } = await stat(entry.source);
    const sha256 = await sha256OfFile(entry.source, (bytes) => onBytes?.(done + bytes));
    done += size;
    files.push({ path: entry.name, sha256, size });
    sources.set(sha256, entry.source);
  }
  return { manifest: { version: MANIFEST_VERSION, main_blend: plan.mainBlend, files }, sources };
}

/** Hashes the project of `plan`, sends its manifest, uploads the files the master lacks. */
export async function uploadProject(options: {
  client: HttpClient;
  plan: BundlePlan;
  parallel: number;
  signal: AbortSignal;
  progress: boolean;
  say: (line: string) => void;
}): Promise<ProjectUpload> {
  const { client, plan, signal, say } = options;
  let total = 0;
  for (const entry of plan.entries) total += (await stat(entry.source)).size;
  const hashing = createProgress('hashing', total, options.progress);
  const { manifest, sources } = await manifestOf(plan, (bytes) => hashing.update(bytes, bytes));
  hashing.stop();
  // A manifest is stored by its hash: sending it again changes nothing.
  const answer = await client.json<ManifestResponse>('POST', '/manifests', { json: manifest, idempotent: true, policy: UPLOAD_RETRY, signal });
  say(
    answer.missing.length === 0
      ? `the master has all ${answer.files} file(s) of this project already: nothing to upload`
      : `the master lacks ${answer.missing.length} of ${answer.files} file(s): uploading ${answer.missing_bytes} bytes`,
  );
  const bar = createProgress('uploading', answer.missing_bytes, options.progress);
  let sentBytes = 0;
  let finished = 0;
  try {
    for (const blob of answer.missing) {
      const path = sources.get(blob.sha256);
      if (!path) throw new Error(`the master asked for file ${blob.sha256.slice(0, 12)}, which is not in this project`);
      const result = await uploadBlob({
        client,
        path,
        sha256: blob.sha256,
        size: blob.size,
        parallel: options.parallel,
        signal,
        onProgress: (p) => bar.update(finished + p.doneBytes, sentBytes + p.sentBytes),
      });
      sentBytes += result.sentBytes;
      finished += blob.size;
    }
  } finally {
    bar.stop();
  }
  return { manifestSha256: answer.manifest_sha256, totalBytes: answer.total_bytes, sentBytes, filesSent: answer.missing.length, files: answer.files };
}
