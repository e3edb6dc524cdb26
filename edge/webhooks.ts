/**
 * Job webhooks: a job may carry a URL that the master POSTs to when the job completes or fails.
 *
 * Jobs finish inside many statements (a node's last upload or report, a lease that ran out on a
 * last attempt), so rather than hooking each, the master keeps an outbox in the jobs table: a job
 * with a webhook is `armed`; one indexed UPDATE claims the armed jobs that have finished
 * (`sending`), and the claimer calls them, each retried with backoff. The outcome is recorded
 * (`delivered` or `failed`, with the attempts and the last error) and shown by
 * `GET /jobs/{id}/webhook`. Requeueing a failed job arms it again.
 *
 * Two claimers, one rule: after requests that may finish a job, the request claims and calls
 * within the 30 s that `waitUntil` gives (low latency); every minute the cron (edge/cron.ts)
 * claims whatever is due, including claims left `sending` by a request whose time ran out or
 * whose isolate died (older than STALE_SENDING_MS), and carries on from the attempt they reached.
 * Correctness comes from the cron: a receiver that hangs costs a request nothing and leaves no
 * delivery stuck.
 *
 * What a receiver gets (docs/operations.md, Webhooks): the JSON body, `X-Farm-Event`,
 * `X-Farm-Delivery` (the same on every retry of one event; a requeued job that finishes again is
 * a new event) and, when FARM_WEBHOOK_SECRET is set, `X-Farm-Timestamp` and `X-Farm-Signature:
 * sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, as Stripe signs its events.
 */
import type { MiddlewareHandler } from 'hono';
import type { WebhookPayload } from '../protocol/api.ts';
import type { AppEnv } from './app-env.ts';
import type { FarmConfig } from './env.ts';
import { executionContext } from './execution-context.ts';
import { claimWebhooks, webhookAttemptFailed, webhookDelivered, webhookFailed, type WebhookJobRow } from './db/webhooks.ts';
import { describeJob } from './job-status.ts';

/**
 * Waits before each attempt (at once, then 1 s, 4 s, 10 s after the previous one), how long one
 * call may take, and how long a request's `waitUntil` may spend calling (under the 30 s workerd
 * gives; the cron carries on from there). Mutable for tests only.
 */
export const webhookTiming = {
  delaysMs: [0, 1_000, 4_000, 10_000] as readonly number[],
  timeoutMs: 8_000,
  inRequestBudgetMs: 25_000,
};

/**
 * A `sending` claim not touched for this long belongs to a caller that stopped (its request's
 * time ran out, or its isolate died): it is taken again. A live caller records every attempt, so
 * it touches the claim at least every longest delay + timeout (10 s + 8 s) plus D1's latency;
 * a minute leaves room, and the per-minute cron picks the claim up within two.
 */
export const STALE_SENDING_MS = 60_000;
/**
 * Jobs one request claims, so one request never fans out without bound: within its budget a
 * request makes two attempts at most (8 s + 1 s + 8 s), about 7 subrequests a job, on top of its own.
 */
const REQUEST_CLAIM_LIMIT = 4;
/**
 * Jobs one cron run claims. A delivery costs up to 12 subrequests (3 D1 reads to describe the
 * job, then per attempt the call and a D1 write), and a run shares the Workers Free limit of 50
 * with the other sweeps (edge/cron.ts): what is not claimed now waits for the next minute.
 */
const CRON_CLAIM_LIMIT = 4;

/** Header names a receiver reads (lower-case on the wire; HTTP header names are case-insensitive). */
const WEBHOOK_HEADERS = {
  event: 'x-farm-event',
  delivery: 'x-farm-delivery',
  timestamp: 'x-farm-timestamp',
  signature: 'x-farm-signature',
} as const;

export interface DeliveryOptions {
  fetcher?: typeof fetch;
  delaysMs?: readonly number[];
  timeoutMs?: number;
  /** FARM_WEBHOOK_SECRET: each call is signed with it; null or absent sends calls unsigned. */
  secret?: string | null;
  /**
   * Epoch ms by which this caller must be done: an attempt that could not finish by then is not
   * started, and the claim is left for the cron. Absent: no limit.
   */
  deadline?: number;
}

const encoder = new TextEncoder();

function toHex(buffer: ArrayBuffer): string {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * The `X-Farm-Signature` value of one call: `sha256=` and the hex HMAC-SHA256, keyed with the
 * secret, of `<timestamp>.<body>` (the timestamp as sent in `X-Farm-Timestamp`, the body's exact
 * bytes). Signing the timestamp lets a receiver refuse an old call replayed.
 */
async function signWebhook(secret: string, timestampS: number, body: string): Promise<string> {
  const key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return `sha256=${toHex(await crypto.subtle.sign('HMAC', key, encoder.encode(`${timestampS}.${body}`)))}`;
}

/**
 * The id of one event: derived from the job, the event and the moment the job finished, so every
 * retry (by any caller, after any restart) carries the same id, and a job requeued and finished
 * again (a new `finished_at`) gets a new one. Shaped as a UUID (version 8: custom) for receivers
 * that keep ids in a uuid column.
 */
async function webhookDeliveryId(jobId: string, event: WebhookPayload['event'], finishedAt: number | null): Promise<string> {
  const bytes = new Uint8Array(await crypto.subtle.digest('SHA-256', encoder.encode(`${jobId}\n${event}\n${finishedAt ?? ''}`))).slice(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x80;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = toHex(bytes.buffer);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * Whether calls are signed, and what to do when a closed (deployed) master sends them unsigned.
 * Without FARM_WEBHOOK_SECRET calls still go out, unsigned, so that a submission with a
 * webhook_url is never refused for a setting its submitter cannot change; local development
 * (anonymous mode) sends unsigned without a word.
 */
export function webhookSigning(config: FarmConfig): { signed: boolean; warning: string | null } {
  if (config.webhookSecret) return { signed: true, warning: null };
  return {
    signed: false,
    warning: config.allowAnonymous
      ? null
      : 'FARM_WEBHOOK_SECRET is not set on this master, so its webhook calls are unsigned and a receiver cannot tell them from forged ones: ' +
        'set it with npx wrangler secret put FARM_WEBHOOK_SECRET (docs/operations.md, Webhooks)',
  };
}

/**
 * Claims up to `limit` finished jobs whose webhook is due (armed, or `sending` with a stale
 * claim); each claimed job is this caller's to deliver. A fresh event starts at attempt 0; a
 * stale claim keeps the attempts it reached.
 */
export async function claimDueWebhooks(db: D1Database, now: number, limit = REQUEST_CLAIM_LIMIT): Promise<WebhookJobRow[]> {
  const results = await claimWebhooks(db, now, now - STALE_SENDING_MS, limit);
  return results.filter((job) => job.webhook_url);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Calls one job's webhook until it answers 2xx, the attempts run out (`failed`), or the deadline
 * leaves no time for the next attempt (the claim stays `sending` for the cron), recording each
 * attempt. Starts from the attempts a previous caller recorded. Redirects are not followed (a 3xx
 * counts as a failure), so a webhook cannot be bounced to somewhere its owner did not name.
 * @returns whether it was delivered
 */
export async function deliverWebhook(db: D1Database, job: WebhookJobRow, options: DeliveryOptions = {}): Promise<boolean> {
  const fetcher = options.fetcher ?? fetch;
  const delays = options.delaysMs ?? webhookTiming.delaysMs;
  const timeoutMs = options.timeoutMs ?? webhookTiming.timeoutMs;
  const event: WebhookPayload['event'] = job.status === 'completed' ? 'job.completed' : 'job.failed';
  const deliveryId = await webhookDeliveryId(job.id, event, job.finished_at);
  let lastError = job.webhook_last_error ?? 'not attempted';
  // Described once per caller: the job has finished, and each attempt would cost D1 reads again.
  const status = await describeJob(db, job);
  const first = job.webhook_attempts;
  for (let attempt = first; attempt < delays.length; attempt++) {
    // A caller resuming another's claim comes after the stale window, longer than any delay.
    const delay = attempt === first ? 0 : delays[attempt]!;
    if (options.deadline !== undefined && Date.now() + delay + timeoutMs > options.deadline) {
      console.warn(`webhook of job ${job.id}: attempt ${attempt + 1} left to the cron (no time left in this request)`);
      return false;
    }
    if (delay > 0) await sleep(delay);
    // Rebuilt per attempt: a fresh timestamp, for the receiver's replay window.
    const payload: WebhookPayload = { event, delivery_id: deliveryId, sent_at: new Date().toISOString(), job: status };
    const body = JSON.stringify(payload);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'blender-farm-webhook/1',
      [WEBHOOK_HEADERS.event]: event,
      [WEBHOOK_HEADERS.delivery]: deliveryId,
    };
    if (options.secret) {
      const timestampS = Math.floor(Date.now() / 1000);
      headers[WEBHOOK_HEADERS.timestamp] = String(timestampS);
      headers[WEBHOOK_HEADERS.signature] = await signWebhook(options.secret, timestampS, body);
    }
    try {
      const response = await fetcher(job.webhook_url, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
      await response.body?.cancel().catch(() => {});
      if (response.status >= 200 && response.status < 300) {
        await webhookDelivered(db, job.id, Date.now());
        return true;
      }
      lastError = `the webhook answered HTTP ${response.status}`;
    } catch (err) {
      lastError = `calling the webhook failed: ${(err as Error).message}`.slice(0, 500);
    }
    // Recorded as it happens, so `GET /jobs/{id}/webhook` shows retries in progress and the
    // claim stays fresh while this caller is alive.
    await webhookAttemptFailed(db, job.id, lastError, Date.now());
  }
  await webhookFailed(db, job.id, Date.now());
  console.warn(`webhook of job ${job.id} failed after ${delays.length} attempts: ${lastError}`);
  return false;
}

/**
 * The cron's sweep: claims a few due webhooks (fresh ones, and claims whose caller stopped) and
 * delivers each to the end of its attempts; what is left waits for the next minute. `now` is
 * the cron's scheduled time.
 * @returns how many webhooks were delivered
 */
export async function sweepWebhooks(db: D1Database, now: number, options: DeliveryOptions = {}): Promise<number> {
  const due = await claimDueWebhooks(db, now, CRON_CLAIM_LIMIT);
  const outcomes = await Promise.all(
    due.map((job) => deliverWebhook(db, job, options).catch((err) => (console.error(`calling the webhook of job ${job.id}:`, err), false))),
  );
  return outcomes.filter(Boolean).length;
}

/**
 * After every request that may have finished a job (anything but GET, HEAD and OPTIONS, and the
 * node requests that said they finished none: uploads, lease renewals, claims): claims the due
 * webhooks before answering (one indexed query, so nothing is left running against D1 once the
 * answer is out), and calls them once the response is on its way, for as long as `waitUntil`
 * allows; the cron finishes what does not fit.
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
  const options: DeliveryOptions = { secret: c.get('config').webhookSecret, deadline: Date.now() + webhookTiming.inRequestBudgetMs };
  for (const job of due) {
    ctx.waitUntil(deliverWebhook(c.env.DB, job, options).catch((err) => console.error(`calling the webhook of job ${job.id}:`, err)));
  }
};
