/**
 * Webhooks a receiver can trust: every call is signed over the exact body it carries, every event
 * has one delivery id across all its retries, and a receiver that hangs leaves its delivery to
 * the cron, which delivers it. The receiver is the isolate's global fetch, stubbed: the master
 * runs in this isolate, so its calls (after a response, or from the cron) land here.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import type { WebhookPayload, WebhookStatus } from '../../protocol/api.ts';
import { app } from '../../edge/app.ts';
import { runScheduledWork } from '../../edge/cron.ts';
import { STALE_SENDING_MS, webhookTiming } from '../../edge/webhooks.ts';
import { BASE, call, claim, json, postJson, registerWorker, renderAll, submitOk, update, webhookReceiver } from './helpers.ts';

const SECRET = 'whsec-test-0123456789';
const HOOK = 'https://hooks.example.com/farm';

/**
 * The receiver's check, as docs/operations.md gives it: HMAC-SHA256 of "<X-Farm-Timestamp>.<raw
 * body>" with the secret, compared in constant time, and a timestamp within 5 minutes.
 */
function verifyFarmSignature(secret: string, rawBody: string, headers: Headers, nowS = Date.now() / 1000): boolean {
  const timestamp = headers.get('x-farm-timestamp') ?? '';
  const signature = headers.get('x-farm-signature') ?? '';
  if (!/^\d+$/.test(timestamp) || Math.abs(nowS - Number(timestamp)) > 300) return false;
  const expected = `sha256=${createHmac('sha256', secret).update(`${timestamp}.${rawBody}`).digest('hex')}`;
  return signature.length === expected.length && timingSafeEqual(Buffer.from(signature), Buffer.from(expected));
}

/** What the receiver answers (then 204), and the calls it got. */
const receiver = webhookReceiver(204);
const received = receiver.calls;
const patchJob = (jobId: string, body: unknown) =>
  call(`/jobs/${jobId}`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const webhookStatus = async (jobId: string) => json<WebhookStatus>(await call(`/jobs/${jobId}/webhook`), 200);

async function waitForWebhook(jobId: string, done: (hook: WebhookStatus) => boolean): Promise<WebhookStatus> {
  for (let i = 0; i < 200; i++) {
    const hook = await webhookStatus(jobId);
    if (done(hook)) return hook;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`the webhook of job ${jobId} never got there: ${JSON.stringify(await webhookStatus(jobId))}`);
}

/** A one-frame job, rendered to completion before it has a webhook (so nothing is called yet). */
async function finishedJob(): Promise<string> {
  const job = await submitOk({ start_frame: 1, end_frame: 1 });
  const node = await registerWorker();
  await renderAll(node, await claim(node));
  return job.job_id;
}

describe('webhook signatures', () => {
  it('a call from a request is signed: the signature verifies with the secret over the body received, and not with another secret or body', async () => {
    const jobId = await finishedJob();
    // The same Worker, with FARM_WEBHOOK_SECRET set, and an execution context whose waitUntil we can await.
    const pending: Promise<unknown>[] = [];
    const ctx = { waitUntil: (p: Promise<unknown>) => pending.push(p), passThroughOnException() {}, props: {} } as unknown as ExecutionContext;
    const res = await app.fetch(
      new Request(`${BASE}/jobs/${jobId}`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ webhook_url: HOOK }) }),
      { ...env, FARM_WEBHOOK_SECRET: SECRET },
      ctx,
    );
    await json(res, 200);
    expect(pending.length).toBeGreaterThan(0);
    await Promise.all(pending);

    expect(received).toHaveLength(1);
    const [call1] = received;
    expect(call1!.headers.get('x-farm-signature')).toMatch(/^sha256=[0-9a-f]{64}$/);
    expect(verifyFarmSignature(SECRET, call1!.body, call1!.headers)).toBe(true);
    expect(verifyFarmSignature('another-secret', call1!.body, call1!.headers)).toBe(false);
    expect(verifyFarmSignature(SECRET, call1!.body.replace('"completed"', '"failed"'), call1!.headers)).toBe(false);
    // A replay: the same body and signature, presented long after its timestamp.
    expect(verifyFarmSignature(SECRET, call1!.body, call1!.headers, Date.now() / 1000 + 600)).toBe(false);
    const body = JSON.parse(call1!.body) as WebhookPayload;
    expect(body).toMatchObject({ event: 'job.completed', job: { job_id: jobId, status: 'completed' } });
    expect(call1!.headers.get('x-farm-event')).toBe('job.completed');
  });

  it('a call from the cron is signed with the secret too', async () => {
    const jobId = await finishedJob();
    await env.DB.prepare(`UPDATE jobs SET webhook_url = ?, webhook_state = 'armed' WHERE id = ?`).bind(HOOK, jobId).run();
    await runScheduledWork({ ...env, FARM_WEBHOOK_SECRET: SECRET }, Date.now());
    expect(received).toHaveLength(1);
    expect(verifyFarmSignature(SECRET, received[0]!.body, received[0]!.headers)).toBe(true);
    expect((await webhookStatus(jobId)).state).toBe('delivered');
  });

  it('without FARM_WEBHOOK_SECRET local development sends unsigned calls; a closed master says so in GET /jobs/{id}/webhook', async () => {
    const jobId = await finishedJob();
    await json(await patchJob(jobId, { webhook_url: HOOK }), 200);
    await waitForWebhook(jobId, (h) => h.state === 'delivered');
    expect(received[0]!.headers.has('x-farm-signature')).toBe(false);
    expect(received[0]!.headers.has('x-farm-timestamp')).toBe(false);
    expect(await webhookStatus(jobId)).toMatchObject({ signed: false, warning: null });

    const closed = { ...env, FARM_ALLOW_ANONYMOUS: 'false', FARM_SUBMIT_TOKEN: 'tok' };
    const read = async (vars: Record<string, string>) =>
      json<WebhookStatus>(
        await app.fetch(new Request(`${BASE}/jobs/${jobId}/webhook`, { headers: { authorization: 'Bearer tok' } }), { ...closed, ...vars }),
        200,
      );
    expect(await read({})).toMatchObject({ signed: false, warning: expect.stringContaining('wrangler secret put FARM_WEBHOOK_SECRET') });
    expect(await read({ FARM_WEBHOOK_SECRET: SECRET })).toMatchObject({ signed: true, warning: null });
  });
});

describe('webhook delivery ids', () => {
  it('every retry of one event carries the same X-Farm-Delivery, also in the signed body; a requeued job that finishes again is a new event', async () => {
    const job = await submitOk({ start_frame: 1, end_frame: 1, max_attempts: 1 });
    await json(await patchJob(job.job_id, { webhook_url: HOOK }), 200);
    const node = await registerWorker();
    receiver.answers = [500, 503, 204];
    await json(await update(node, await claim(node), 'failed', { message: 'Blender crashed', failure_reason: 'crash' }), 200);
    await waitForWebhook(job.job_id, (h) => h.state === 'delivered');
    expect(received).toHaveLength(3);
    const failedIds = received.map((r) => r.headers.get('x-farm-delivery'));
    expect(failedIds[0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(failedIds).size).toBe(1);
    expect(received.map((r) => r.payload.delivery_id)).toEqual(failedIds);

    // Requeued, it fails again: the same event name, but a new event.
    await json(await postJson(`/jobs/${job.job_id}/requeue_failed`, {}), 200);
    await json(await update(node, await claim(node), 'failed', { message: 'Blender crashed again', failure_reason: 'crash' }), 200);
    await waitForWebhook(job.job_id, (h) => h.state === 'delivered' && h.attempts === 1);
    expect(received).toHaveLength(4);
    expect(received[3]!.headers.get('x-farm-event')).toBe('job.failed');
    expect(received[3]!.headers.get('x-farm-delivery')).not.toBe(failedIds[0]);
  });
});

describe('webhooks and the cron', () => {
  it('a live caller is never taken over: the stale window is longer than the longest wait between two recorded attempts', () => {
    expect(STALE_SENDING_MS).toBeGreaterThan(Math.max(...webhookTiming.delaysMs) + webhookTiming.timeoutMs);
  });

  it('a receiver that hangs costs the request its budget only; the cron retries the delivery with the same id and delivers it', async () => {
    webhookTiming.timeoutMs = 100;
    webhookTiming.inRequestBudgetMs = 150;
    const jobId = await finishedJob();
    receiver.answers = ['hang', 'hang', 'hang'];
    await json(await patchJob(jobId, { webhook_url: HOOK }), 200);
    // The request's attempt timed out; no time was left for another, so the claim waits for the cron.
    const handedOver = await waitForWebhook(jobId, (h) => h.attempts === 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(await webhookStatus(jobId)).toMatchObject({ state: 'sending', attempts: 1, last_error: expect.stringContaining('calling the webhook failed') });
    expect(handedOver.state).toBe('sending');
    expect(received).toHaveLength(1);

    // A cron run while the claim is fresh leaves it to its caller.
    await runScheduledWork(env, Date.now());
    expect(received).toHaveLength(1);

    // Once the claim is stale the cron takes it, carries on from attempt 2, and gets through.
    receiver.answers = [204];
    await runScheduledWork(env, Date.now() + STALE_SENDING_MS + 1_000);
    expect(await webhookStatus(jobId)).toMatchObject({ state: 'delivered', attempts: 2, last_error: null });
    expect(received).toHaveLength(2);
    expect(received[1]!.headers.get('x-farm-delivery')).toBe(received[0]!.headers.get('x-farm-delivery'));

    // Delivered is final: later runs call nothing.
    await runScheduledWork(env, Date.now() + 2 * STALE_SENDING_MS);
    expect(received).toHaveLength(2);
  });

  it('a receiver that hangs on every attempt ends failed from the cron, not stuck in sending', async () => {
    webhookTiming.timeoutMs = 50;
    const jobId = await finishedJob();
    await env.DB.prepare(`UPDATE jobs SET webhook_url = ?, webhook_state = 'armed' WHERE id = ?`).bind(HOOK, jobId).run();
    receiver.answers = ['hang', 'hang', 'hang', 'hang'];
    await runScheduledWork(env, Date.now());
    expect(await webhookStatus(jobId)).toMatchObject({ state: 'failed', attempts: 4, last_error: expect.stringContaining('calling the webhook failed') });
    expect(received).toHaveLength(4);
  });
});
