/**
 * The node's client of the master, over the one HTTP client (protocol/http-client.ts, which says
 * what is retried): the node's credential, the fencing headers on every call about a task, and
 * streamed uploads and downloads. Every call here is safe to repeat (a claim carries its claim id,
 * a task call its lease, files are checked by SHA-256), so all are retried on transient trouble.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { stat, truncate } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FarmApiError, header, HttpClient, type RetryPolicy } from '../protocol/http-client.ts';
import {
  HEADER_LEASE_ID,
  HEADER_RENDER_MS,
  HEADER_SHA256,
  HEADER_WORKER_ID,
  type RegisterWorkerRequest,
  type RegisterWorkerResponse,
  type TaskAssignment,
  taskAssignmentSchema,
  type UpdateTaskStatusRequest,
  type UpdateTaskStatusResponse,
  type UploadResultResponse,
} from '../protocol/schemas.ts';

/**
 * For calls about a task in hand (uploads, reports, the blend): a master that restarts or a
 * network that drops for up to ten minutes costs no rendered frame, because a lease that ran out
 * while nobody could claim it is still this node's when the master is back. A lease that is
 * really gone ends the retries at once (409), and a master that keeps failing ends them after ten
 * minutes, so a node is never stuck on one task.
 */
const TASK_RETRY: RetryPolicy = { retries: Infinity, minDelayMs: 500, maxDelayMs: 10_000, maxRetryTimeMs: 10 * 60_000 };
/** For registering and polling: a node never exits because the master is down. */
const FOREVER_RETRY: RetryPolicy = { retries: Infinity, minDelayMs: 500, maxDelayMs: 30_000 };

export interface MasterClientOptions {
  baseUrl: string;
  /** The enrolment token (FARM_NODE_TOKEN): sent only to register a node without a credential. */
  enrolmentToken?: string;
  /** The node's own credential, when it enrolled before (see identity.ts). */
  credential?: string;
  /** Called before each retry, so the daemon can log the master's state. */
  onRetry?: (what: string, error: Error, delayMs: number) => void;
}

export class MasterClient {
  readonly baseUrl: string;
  private readonly enrolmentToken: string | undefined;
  private nodeCredential: string | undefined;
  private readonly http: HttpClient;

  constructor(options: MasterClientOptions) {
    this.enrolmentToken = options.enrolmentToken || undefined;
    this.nodeCredential = options.credential || undefined;
    this.http = new HttpClient({
      baseUrl: options.baseUrl,
      // The node's credential on every call; the enrolment token only on `register`.
      token: () => this.nodeCredential,
      retry: TASK_RETRY,
      // Long polls hold a connection for up to 30 s; keep headers timeouts above that.
      headersTimeoutMs: 120_000,
      bodyTimeoutMs: 300_000,
      onRetry: options.onRetry,
    });
    this.baseUrl = this.http.baseUrl;
  }

  /** The credential sent with every call from now on; undefined forgets it (it was refused). */
  setCredential(credential: string | undefined): void {
    this.nodeCredential = credential || undefined;
  }

  get hasCredential(): boolean {
    return this.nodeCredential !== undefined;
  }

  /** A JSON call, repeated through transient trouble by `policy`. */
  private json<T>(method: 'GET' | 'POST', path: string, body: unknown, policy: RetryPolicy, init: { signal?: AbortSignal; token?: string } = {}): Promise<T> {
    return this.http.json<T>(method, path, { json: body, policy, idempotent: true, ...init });
  }

  /** One streamed call about a task, fenced by its lease, repeated by TASK_RETRY. */
  private retrying<T>(what: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.http.retrying(what, fn, { idempotent: true, policy: TASK_RETRY, signal });
  }

  /** Registers; the enrolment token travels only here, and only while the node has no credential. */
  register(body: RegisterWorkerRequest, signal?: AbortSignal): Promise<RegisterWorkerResponse> {
    return this.json<RegisterWorkerResponse>('POST', '/register_worker', body, FOREVER_RETRY, { signal, token: this.nodeCredential ?? this.enrolmentToken });
  }

  /**
   * Long-polls for work: null after `waitMs` without any. The assignment is validated before
   * anything uses it: its ids, names and numbers end up in paths on this disk and in Blender's
   * command line, and the node does not take the master's word for their shape.
   */
  async getJob(workerId: string, waitMs: number, signal?: AbortSignal): Promise<TaskAssignment | null> {
    // One claim id for this request and all its retries: a claim whose answer was lost comes back.
    const claim = { worker_id: workerId, wait_ms: waitMs, claim_id: randomUUID() };
    const body = await this.json<unknown>('POST', '/get_job', claim, FOREVER_RETRY, { signal });
    if (body === null) return null;
    const parsed = taskAssignmentSchema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new Error(`the master sent a task this node refuses: ${issue ? `${issue.path.join('.')}: ${issue.message}` : 'invalid'}`);
    }
    return parsed.data;
  }

  updateTask(body: UpdateTaskStatusRequest): Promise<UpdateTaskStatusResponse> {
    return this.json<UpdateTaskStatusResponse>('POST', '/update_task_status', body, TASK_RETRY);
  }

  /** Streams a rendered frame from disk with its SHA-256, which R2 verifies on arrival. */
  async uploadFrame(args: {
    workerId: string;
    taskId: string;
    leaseId: string;
    frame: number;
    path: string;
    renderMs: number | null;
  }): Promise<UploadResultResponse> {
    const ext = args.path.split('.').pop()!.toLowerCase();
    const [sha256, { size }] = await Promise.all([sha256File(args.path), stat(args.path)]);
    return this.retrying(`uploading frame ${args.frame}`, async () => {
      const response = await this.http.send('PUT', `/tasks/${args.taskId}/frames/${args.frame}?ext=${encodeURIComponent(ext)}`, {
        headers: {
          'content-type': 'application/octet-stream',
          'content-length': String(size),
          [HEADER_WORKER_ID]: args.workerId,
          [HEADER_LEASE_ID]: args.leaseId,
          [HEADER_SHA256]: sha256,
          ...(args.renderMs !== null ? { [HEADER_RENDER_MS]: String(Math.round(args.renderMs)) } : {}),
        },
        body: createReadStream(args.path),
      });
      return (await response.body.json()) as UploadResultResponse;
    });
  }

  /** Uploads a frame's small preview image (JPEG or PNG) for the dashboard; the frame must be uploaded first. */
  async uploadPreview(args: {
    workerId: string;
    taskId: string;
    leaseId: string;
    frame: number;
    path: string;
    contentType: 'image/jpeg' | 'image/png';
  }): Promise<void> {
    const { size } = await stat(args.path);
    await this.retrying(`uploading the preview of frame ${args.frame}`, async () => {
      const response = await this.http.send('PUT', `/tasks/${args.taskId}/frames/${args.frame}/preview`, {
        headers: {
          'content-type': args.contentType,
          'content-length': String(size),
          [HEADER_WORKER_ID]: args.workerId,
          [HEADER_LEASE_ID]: args.leaseId,
        },
        body: createReadStream(args.path),
      });
      await response.body.dump();
    });
  }

  async uploadLog(args: { workerId: string; taskId: string; leaseId: string; path: string }): Promise<void> {
    const { size } = await stat(args.path);
    if (size === 0) return;
    await this.retrying('uploading the task log', async () => {
      const response = await this.http.send('PUT', `/tasks/${args.taskId}/log`, {
        headers: {
          'content-type': 'text/plain',
          'content-length': String(size),
          [HEADER_WORKER_ID]: args.workerId,
          [HEADER_LEASE_ID]: args.leaseId,
        },
        body: createReadStream(args.path),
      });
      await response.body.dump();
    });
  }

  /**
   * Streams a task's one output from disk: a tile's PNG (`image/png`) or a preview video
   * (`video/mp4`), with its SHA-256, which the master checks on arrival. Not a frame: a tile or
   * a video is not part of the job's frame list.
   */
  async uploadOutput(args: { workerId: string; taskId: string; leaseId: string; path: string; contentType: string }): Promise<void> {
    const [sha256, { size }] = await Promise.all([sha256File(args.path), stat(args.path)]);
    await this.retrying('uploading the task output', async () => {
      const response = await this.http.send('PUT', `/tasks/${args.taskId}/output`, {
        headers: {
          'content-type': args.contentType,
          'content-length': String(size),
          [HEADER_WORKER_ID]: args.workerId,
          [HEADER_LEASE_ID]: args.leaseId,
          [HEADER_SHA256]: sha256,
        },
        body: createReadStream(args.path),
      });
      await response.body.dump();
    });
  }

  /**
   * Streams input `n` of a task to `dest` (a stitch task's tile n, a video task's frame n) and
   * returns the Content-Type the master gave it. A retry starts the file again from the top. A
   * 404 (the input is not there) is raised at once as a FarmApiError. When the master sends an
   * x-farm-sha256 header, the file is checked against it.
   */
  async downloadInput(args: {
    workerId: string;
    taskId: string;
    leaseId: string;
    n: number;
    dest: string;
    signal?: AbortSignal;
  }): Promise<{ contentType: string; size: number }> {
    return this.retrying(
      `downloading input ${args.n}`,
      async () => {
        const response = await this.http.send('GET', `/tasks/${args.taskId}/inputs/${args.n}`, {
          headers: { [HEADER_WORKER_ID]: args.workerId, [HEADER_LEASE_ID]: args.leaseId },
          signal: args.signal,
        });
        const hash = createHash('sha256');
        let size = 0;
        const hasher = new Transform({
          transform(chunk: Buffer, _enc, done) {
            hash.update(chunk);
            size += chunk.length;
            done(null, chunk);
          },
        });
        await pipeline(response.body, hasher, createWriteStream(args.dest), args.signal ? { signal: args.signal } : {});
        const expected = header(response, HEADER_SHA256);
        const got = hash.digest('hex');
        if (expected !== undefined && expected.toLowerCase() !== got) {
          throw new Error(`input ${args.n} arrived with SHA-256 ${got}, expected ${expected}: the download was corrupted`);
        }
        return { contentType: header(response, 'content-type') ?? 'application/octet-stream', size };
      },
      args.signal,
    );
  }

  /** Streams a stored blend to `dest`, hashing as it goes; returns the hex SHA-256. */
  async downloadBlend(blendFile: string, dest: string): Promise<string> {
    return this.download(`downloading ${blendFile}`, `/download_blend/${encodeURIComponent(blendFile)}`, dest);
  }

  /** Downloads one file a project manifest lists (by its hash) to `dest`; returns its SHA-256. */
  async downloadManifestFile(manifestSha256: string, fileSha256: string, dest: string): Promise<string> {
    return this.download(`downloading file ${fileSha256.slice(0, 12)}`, `/manifests/${manifestSha256}/files/${fileSha256}`, dest);
  }

  /**
   * Streams `path` to `dest` through SHA-256; returns the hash of the whole file. A try cut short
   * is resumed from the bytes already in `dest` (`Range: bytes=N-`, those N bytes hashed first, the
   * rest appended), and the file starts again from the top when the master answers with the whole
   * file (200), with another range, or refuses the range (416). Blends and manifest files alike.
   */
  private async download(what: string, path: string, dest: string): Promise<string> {
    return this.retrying(what, async () => {
      let offset = await stat(dest).then(
        (s) => (s.isFile() ? s.size : 0),
        () => 0,
      );
      const response = await this.http.send('GET', path, offset > 0 ? { headers: { range: `bytes=${offset}-` } } : {}).catch((err: unknown) => {
        if (offset > 0 && err instanceof FarmApiError && err.status === 416) {
          offset = 0;
          return this.http.send('GET', path);
        }
        throw err;
      });
      if (offset > 0 && !(response.statusCode === 206 && rangeStart(header(response, 'content-range')) === offset)) {
        if (response.statusCode !== 200) {
          await response.body.dump().catch(() => {});
          await truncate(dest, 0);
          throw new Error(
            `${what}: the master answered ${response.statusCode} (${String(response.headers['content-range'])}) to bytes=${offset}-; starting again`,
          );
        }
        offset = 0;
      }
      const hash = createHash('sha256');
      if (offset > 0) {
        for await (const chunk of createReadStream(dest, { end: offset - 1 })) hash.update(chunk as Buffer);
      }
      const hasher = new Transform({
        transform(chunk, _enc, done) {
          hash.update(chunk);
          done(null, chunk);
        },
      });
      await pipeline(response.body, hasher, createWriteStream(dest, { flags: offset > 0 ? 'a' : 'w' }));
      return hash.digest('hex');
    });
  }

  close(): Promise<void> {
    return this.http.close();
  }
}

/** The first byte of a `Content-Range: bytes a-b/n` header, or null. */
function rangeStart(value: string | undefined): number | null {
  const match = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(value?.trim() ?? '');
  return match ? Number(match[1]) : null;
}

/** Hex SHA-256 of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
