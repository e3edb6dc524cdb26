/**
 * The webhook outbox kept in the jobs table (edge/webhooks.ts says why): claiming the due ones and
 * recording each attempt. Every write after the claim requires the claim (`sending`), so a caller
 * whose claim was taken over writes nothing.
 */
import { type SQL, sql } from 'drizzle-orm';
import type { WebhookState } from '../../protocol/api.ts';
import { all, name, openDb, run } from './client.ts';
import type { JobRow } from './jobs.ts';
import { FINISHED, statusIn } from './state-machine.ts';

/** A webhook state as an SQL constant, checked against protocol/'s names by the compiler. */
const hook = (s: WebhookState): SQL => name(s);

export type WebhookJobRow = JobRow & { webhook_url: string; webhook_attempts: number; webhook_last_error: string | null };

/**
 * Claims up to `limit` finished jobs whose webhook is due: armed, or `sending` with a claim not
 * touched since `staleBefore`. A fresh event starts at attempt 0; a stale claim keeps the
 * attempts it reached. The jobs_webhook_state index finds them among the few armed or sending.
 */
export async function claimWebhooks(d1: D1Database, now: number, staleBefore: number, limit: number): Promise<WebhookJobRow[]> {
  return all(
    openDb(d1),
    sql`UPDATE jobs SET webhook_state = ${hook('sending')}, webhook_updated_at = ${now},
          webhook_attempts = CASE WHEN webhook_state = ${hook('armed')} THEN 0 ELSE webhook_attempts END,
          webhook_last_error = CASE WHEN webhook_state = ${hook('armed')} THEN NULL ELSE webhook_last_error END
        WHERE id IN (SELECT id FROM jobs
          WHERE (webhook_state = ${hook('armed')} AND ${statusIn('jobs', FINISHED)})
             OR (webhook_state = ${hook('sending')} AND webhook_updated_at < ${staleBefore})
          LIMIT ${limit})
        RETURNING *`,
  );
}

/** The webhook answered 2xx. */
export async function webhookDelivered(d1: D1Database, jobId: string, now: number): Promise<void> {
  await run(
    openDb(d1),
    sql`UPDATE jobs SET webhook_state = ${hook('delivered')}, webhook_attempts = webhook_attempts + 1, webhook_last_error = NULL,
          webhook_delivered_at = ${now}, webhook_updated_at = ${now} WHERE id = ${jobId} AND webhook_state = ${hook('sending')}`,
  );
}

/** An attempt failed; recorded as it happens, so the claim stays fresh while its caller is alive. */
export async function webhookAttemptFailed(d1: D1Database, jobId: string, error: string, now: number): Promise<void> {
  await run(
    openDb(d1),
    sql`UPDATE jobs SET webhook_attempts = webhook_attempts + 1, webhook_last_error = ${error}, webhook_updated_at = ${now}
        WHERE id = ${jobId} AND webhook_state = ${hook('sending')}`,
  );
}

/** The attempts ran out. */
export async function webhookFailed(d1: D1Database, jobId: string, now: number): Promise<void> {
  await run(
    openDb(d1),
    sql`UPDATE jobs SET webhook_state = ${hook('failed')}, webhook_updated_at = ${now} WHERE id = ${jobId} AND webhook_state = ${hook('sending')}`,
  );
}
