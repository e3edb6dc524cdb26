/**
 * Job webhooks: a job may carry a URL that the master POSTs to when the job completes or fails.
 *
 * Jobs finish inside many statements (a node's last upload or report, a lease that ran out on a
 * last attempt), so rather than hooking each, the master keeps an outbox in the jobs table: a job
 * with a webhook is `armed`; after every request that can change state, one indexed UPDATE claims
 * the armed jobs that have finished (`sending`), and the calls run after the response
 * (`waitUntil`), each retried with backoff. The outcome is recorded (`delivered` or `failed`, with
 * the attempts and the last error) and shown by `GET /jobs/{id}/webhook`. A claim whose isolate
 * died mid-way is taken again after STALE_SENDING_MS. Requeueing a failed job arms it again.
 */
import type { MiddlewareHandler } from 'hono';
import type { WebhookPayload } from '../protocol/api.ts';
import type { AppEnv } from './app-env.ts';
import { executionContext } from './execution-context.ts';
import { describeJob, type JobRow } from './job-status.ts';

/**
 * Waits before each attempt (at once, then 1 s, 4 s, 10 s: all within the 30 s that waitUntil
 * gives after the response) and how long one call may take. Mutable for tests only.
 */
export const webhookTiming = { delaysMs: [0, 1_000, 4_000, 10_000] as readonly number[], timeoutMs: 8_000 };
/** A `sending` claim older than this belongs to an isolate that died: it is taken again. */
export const STALE_SENDING_MS = 5 * 60_000;
/** Jobs claimed per sweep, so one request never fans out without bound. */
const SWEEP_LIMIT = 10;

type WebhookJobRow = JobRow & { webhook_url: string };

export interface DeliveryOptions {
  fetcher?: typeof fetch;
  delaysMs?: readonly number[];
  timeoutMs?: number;
}

/** Claims the finished jobs whose webhook is due; each claimed job is this caller's to deliver. */
export async function claimDueWebhooks(db: D1Database, now: number): Promise<WebhookJobRow[]> {
  const { results } = await db
    .prepare(
      `UPDATE jobs SET webhook_state = 'sending', webhook_updated_at = ?1
       WHERE id IN (SELECT id FROM jobs
         WHERE (webhook_state = 'armed' AND status IN ('completed', 'failed'))
            OR (webhook_state = 'sending' AND webhook_updated_at < ?2)
         LIMIT ?3)
       RETURNING *`,
    )
    .bind(now, now - STALE_SENDING_MS, SWEEP_LIMIT)
    .all<WebhookJobRow>();
  return results.filter((job) => job.webhook_url);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Calls one job's webhook until it answers 2xx or the attempts run out, recording each attempt.
 * Redirects are not followed (a 3xx counts as a failure), so a webhook cannot be bounced to
 * somewhere its owner did not name.
 * @returns whether it was delivered
 */
export async function deliverWebhook(db: D1Database, job: WebhookJobRow, options: DeliveryOptions = {}): Promise<boolean> {
  const fetcher = options.fetcher ?? fetch;
  const delays = options.delaysMs ?? webhookTiming.delaysMs;
  const status = await describeJob(db, job);
  const event = status.status === 'completed' ? 'job.completed' : 'job.failed';
  const payload: WebhookPayload = { event, sent_at: new Date().toISOString(), job: status };
  const body = JSON.stringify(payload);
  let lastError = 'not attempted';
  for (const delay of delays) {
    if (delay > 0) await sleep(delay);
    try {
      const response = await fetcher(job.webhook_url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'blender-farm-webhook/1', 'x-farm-event': event },
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(options.timeoutMs ?? webhookTiming.timeoutMs),
      });
      await response.body?.cancel().catch(() => {});
      if (response.status >= 200 && response.status < 300) {
        const now = Date.now();
        await db
          .prepare(
            `UPDATE jobs SET webhook_state = 'delivered', webhook_attempts = webhook_attempts + 1, webhook_last_error = NULL,
               webhook_delivered_at = ?1, webhook_updated_at = ?1 WHERE id = ?2 AND webhook_state = 'sending'`,
          )
          .bind(now, job.id)
          .run();
        return true;
      }
      lastError = `the webhook answered HTTP ${response.status}`;
    } catch (err) {
      lastError = `calling the webhook failed: ${(err as Error).message}`.slice(0, 500);
    }
    // Recorded as it happens, so `GET /jobs/{id}/webhook` shows retries in progress.
    await db
      .prepare(
        `UPDATE jobs SET webhook_attempts = webhook_attempts + 1, webhook_last_error = ?1, webhook_updated_at = ?2
         WHERE id = ?3 AND webhook_state = 'sending'`,
      )
      .bind(lastError, Date.now(), job.id)
      .run();
  }
  await db
    .prepare(`UPDATE jobs SET webhook_state = 'failed', webhook_updated_at = ?1 WHERE id = ?2 AND webhook_state = 'sending'`)
    .bind(Date.now(), job.id)
    .run();
  console.warn(`webhook of job ${job.id} failed after ${delays.length} attempts: ${lastError}`);
  return false;
}

/** Claims and delivers every due webhook. */
export async function sweepWebhooks(db: D1Database, options: DeliveryOptions = {}): Promise<number> {
  const due = await claimDueWebhooks(db, Date.now());
  await Promise.all(due.map((job) => deliverWebhook(db, job, options)));
  return due.length;
}

/**
 * After every request that may have finished a job (anything but GET, HEAD and OPTIONS, and the
 * node requests that said they finished none: uploads, lease renewals, claims): claims
 * the due webhooks before answering (one indexed query, so nothing is left running against D1
 * once the answer is out), and calls them once the response is on its way.
 */
export const webhookSweeper: MiddlewareHandler<AppEnv> = async (c, next) => {
  await next();
  if (c.req.method === 'GET' || c.req.method === 'HEAD' || c.req.method === 'OPTIONS' || c.get('noJobFinished')) return;
  const ctx = executionContext(c);
  if (!ctx) return;
  let due: WebhookJobRow[];
  try {
    due = await claimDueWebhooks(c.env.DB, Date.now());
  } catch (err) {
    // The request itself succeeded; the webhooks stay armed for the next sweep.
    console.error('claiming job webhooks:', err);
    return;
  }
  for (const job of due) {
    ctx.waitUntil(deliverWebhook(c.env.DB, job).catch((err) => console.error(`calling the webhook of job ${job.id}:`, err)));
  }
};
