/**
 * Downloads a task's inputs (a stitch task's tiles, a video task's frames) from the master into
 * the task's folder, a few at a time, each named with the extension its Content-Type says.
 */
import { open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { FRAME_CONTENT_TYPES } from '../../protocol/schemas.ts';
import { FarmApiError } from '../../protocol/http-client.ts';
import type { InputTaskContext } from './input-task.ts';
import { TaskFailure } from './task-failure.ts';

/** Downloads in flight at once: enough to hide the round trips, few enough for a small master. */
const PARALLEL_DOWNLOADS = 4;

/** File extensions of the image types the master serves frames and tiles as (the first extension of each type). */
const EXTENSION_OF_TYPE: Record<string, string> = Object.fromEntries(
  Object.entries(FRAME_CONTENT_TYPES)
    .reverse()
    .map(([ext, type]) => [type, ext]),
);

/** Magic numbers, for an input served without a specific type (application/octet-stream). */
const MAGIC: [Buffer, string][] = [
  [Buffer.from([0x89, 0x50, 0x4e, 0x47]), 'png'],
  [Buffer.from([0xff, 0xd8, 0xff]), 'jpg'],
  [Buffer.from([0x76, 0x2f, 0x31, 0x01]), 'exr'],
];

export interface DownloadInputsOptions {
  /** File name prefix, e.g. `tile_`. */
  prefix: string;
  /** How the input is named in messages, e.g. `tile 2`, `frame 17`. */
  describe: (n: number) => string;
}

/**
 * Downloads inputs `ns` into `ctx.dir` as `<prefix><n, 6 digits>.<ext>` and returns each path
 * by n. An input the master does not have (404) fails the task as `input_missing`.
 */
export async function downloadInputs(ctx: InputTaskContext, ns: readonly number[], options: DownloadInputsOptions): Promise<Map<number, string>> {
  const paths = new Map<number, string>();
  const queue = [...ns];
  const worker = async () => {
    for (let n = queue.shift(); n !== undefined; n = queue.shift()) {
      ctx.signal.throwIfAborted();
      paths.set(n, await downloadOne(ctx, n, options));
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL_DOWNLOADS, ns.length) }, worker));
  ctx.note(`downloaded ${ns.length} input(s)`);
  return paths;
}

async function downloadOne(ctx: InputTaskContext, n: number, options: DownloadInputsOptions): Promise<string> {
  const base = join(ctx.dir, `${options.prefix}${String(n).padStart(6, '0')}`);
  const part = `${base}.part`;
  try {
    const { contentType } = await ctx.client.downloadInput({
      workerId: ctx.workerId,
      taskId: ctx.task.task_id,
      leaseId: ctx.task.lease_id,
      n,
      dest: part,
      signal: ctx.signal,
    });
    const ext = EXTENSION_OF_TYPE[contentType.split(';')[0]!.trim().toLowerCase()] ?? (await sniffExtension(part));
    if (!ext) throw new Error(`the master sent ${options.describe(n)} as ${contentType}, which is not an image type this node knows`);
    const path = `${base}.${ext}`;
    await rename(part, path);
    return path;
  } catch (err) {
    await rm(part, { force: true });
    if (err instanceof FarmApiError && err.status === 404) {
      throw new TaskFailure('input_missing', `${options.describe(n)} is not on the master: ${err.message}`, { cause: err });
    }
    // A lease that is gone (409) stays the master's answer, so the runner drops the task quietly.
    if (ctx.signal.aborted || err instanceof TaskFailure || (err instanceof FarmApiError && err.status !== null)) throw err;
    throw new Error(`downloading ${options.describe(n)}: ${(err as Error).message}`, { cause: err });
  }
}

async function sniffExtension(path: string): Promise<string | undefined> {
  const file = await open(path, 'r');
  try {
    const head = Buffer.alloc(8);
    await file.read(head, 0, head.length, 0);
    return MAGIC.find(([magic]) => head.subarray(0, magic.length).equals(magic))?.[1];
  } finally {
    await file.close();
  }
}
