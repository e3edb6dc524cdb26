/**
 * A typed client of the master's API for people's tools (the `farm` CLI, scripts, tests), over
 * the one HTTP client (http-client.ts, which says what is retried). Every answer is checked
 * against the same zod schema the master's OpenAPI document is generated from, so a master and a
 * client that disagree fail loudly here rather than later with an `undefined`.
 */
import {
  blocklistResponseSchema,
  deleteJobResponseSchema,
  frameListResponseSchema,
  jobControlResponseSchema,
  jobListResponseSchema,
  requeueResponseSchema,
  taskListResponseSchema,
  webhookStatusSchema,
  workerControlResponseSchema,
  workerListResponseSchema,
  type BlocklistResponse,
  type DeleteJobResponse,
  type FrameListItem,
  type FrameListResponse,
  type JobControlResponse,
  type JobListResponse,
  type RequeueResponse,
  type TaskListResponse,
  type UpdateJobRequest,
  type WebhookStatus,
  type WorkerControlResponse,
  type WorkerListResponse,
} from './api.ts';
import { HttpClient, type HttpClientOptions, type Response, type RetryPolicy } from './http-client.ts';
import { jobStatusSchema, type JobStatus, type JobStatusResponse } from './schemas.ts';

export { FarmApiError, type Response } from './http-client.ts';

/** A person waits for the answer: a few quick tries. */
const PERSON_RETRY: RetryPolicy = { retries: 4, minDelayMs: 500, maxDelayMs: 15_000 };

export interface FarmClientOptions {
  /** The master, e.g. `http://localhost:8000`. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer`; not needed by a master in anonymous mode. */
  token?: string;
  /** Tries after the first for retryable failures (default 4). */
  retries?: number;
  /** The first backoff; it doubles per try (default 500 ms). */
  retryDelayMs?: number;
  onRetry?: HttpClientOptions['onRetry'];
}

export class FarmClient extends HttpClient {
  constructor(options: FarmClientOptions) {
    super({
      baseUrl: options.baseUrl,
      token: options.token,
      retry: { ...PERSON_RETRY, retries: options.retries ?? PERSON_RETRY.retries, minDelayMs: options.retryDelayMs ?? PERSON_RETRY.minDelayMs },
      // A part of 16 MiB on a slow line takes minutes: generous timeouts.
      headersTimeoutMs: 600_000,
      bodyTimeoutMs: 600_000,
      connections: 16,
      onRetry: options.onRetry,
    });
  }

  // ---- jobs
  jobStatus(jobId: string): Promise<JobStatusResponse> {
    return this.parsed(jobStatusSchema, 'GET', `/job_status/${encodeURIComponent(jobId)}`);
  }

  listJobs(query: { limit?: number; cursor?: string; status?: JobStatus } = {}): Promise<JobListResponse> {
    return this.parsed(jobListResponseSchema, 'GET', '/jobs', { query });
  }

  frames(jobId: string, query: { after?: number; limit?: number } = {}): Promise<FrameListResponse> {
    return this.parsed(frameListResponseSchema, 'GET', `/jobs/${encodeURIComponent(jobId)}/frames`, { query });
  }

  /** Every stored frame of a job, a page at a time. */
  async *allFrames(jobId: string, pageSize = 1000): AsyncGenerator<FrameListItem> {
    let after: number | undefined;
    for (;;) {
      const page = await this.frames(jobId, { after, limit: pageSize });
      yield* page.frames;
      if (page.next_after === null) return;
      after = page.next_after;
    }
  }

  tasks(jobId: string): Promise<TaskListResponse> {
    return this.parsed(taskListResponseSchema, 'GET', `/jobs/${encodeURIComponent(jobId)}/tasks`);
  }

  async taskLog(jobId: string, taskId: string): Promise<string> {
    const response = await this.request('GET', `/jobs/${encodeURIComponent(jobId)}/tasks/${encodeURIComponent(taskId)}/log`);
    return response.body.text();
  }

  blocklist(jobId: string): Promise<BlocklistResponse> {
    return this.parsed(blocklistResponseSchema, 'GET', `/jobs/${encodeURIComponent(jobId)}/blocklist`);
  }

  webhook(jobId: string): Promise<WebhookStatus> {
    return this.parsed(webhookStatusSchema, 'GET', `/jobs/${encodeURIComponent(jobId)}/webhook`);
  }

  /** A frame's bytes as a streaming answer (`x-farm-sha256` carries its hash). */
  frame(jobId: string, frame: number, signal?: AbortSignal): Promise<Response> {
    return this.request('GET', `/jobs/${encodeURIComponent(jobId)}/frames/${frame}`, { signal });
  }

  /** Every frame in one ZIP, as a streaming answer. */
  framesZip(jobId: string, signal?: AbortSignal): Promise<Response> {
    return this.request('GET', `/jobs/${encodeURIComponent(jobId)}/frames.zip`, { signal });
  }

  // ---- job control
  pause(jobId: string): Promise<JobControlResponse> {
    return this.parsed(jobControlResponseSchema, 'POST', `/jobs/${encodeURIComponent(jobId)}/pause`);
  }

  resume(jobId: string): Promise<JobControlResponse> {
    return this.parsed(jobControlResponseSchema, 'POST', `/jobs/${encodeURIComponent(jobId)}/resume`);
  }

  cancel(jobId: string): Promise<JobControlResponse> {
    return this.parsed(jobControlResponseSchema, 'POST', `/jobs/${encodeURIComponent(jobId)}/cancel`);
  }

  updateJob(jobId: string, body: UpdateJobRequest): Promise<JobControlResponse> {
    return this.parsed(jobControlResponseSchema, 'PATCH', `/jobs/${encodeURIComponent(jobId)}`, { json: body });
  }

  requeueFailed(jobId: string): Promise<RequeueResponse> {
    return this.parsed(requeueResponseSchema, 'POST', `/jobs/${encodeURIComponent(jobId)}/requeue_failed`);
  }

  deleteJob(jobId: string): Promise<DeleteJobResponse> {
    return this.parsed(deleteJobResponseSchema, 'DELETE', `/jobs/${encodeURIComponent(jobId)}`);
  }

  // ---- nodes
  workers(): Promise<WorkerListResponse> {
    return this.parsed(workerListResponseSchema, 'GET', '/workers');
  }

  controlWorker(workerId: string, action: 'drain' | 'disable' | 'enable'): Promise<WorkerControlResponse> {
    return this.parsed(workerControlResponseSchema, 'POST', `/workers/${encodeURIComponent(workerId)}/${action}`);
  }
}
