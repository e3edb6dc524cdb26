/** Mounts the routes and turns every error into `{ "error": "..." }`. */
import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { AppEnv } from './app-env.ts';
import { authenticate } from './auth.ts';
import { groupCommitting } from './batch-together.ts';
import { executionContext } from './execution-context.ts';
import { readConfig } from './env.ts';
import { addonRoutes } from './routes/addon.ts';
import { blendRoutes } from './routes/blends.ts';
import { blobJobRoutes } from './routes/blob-jobs.ts';
import { blobRoutes } from './routes/blobs.ts';
import { docsRoutes } from './routes/docs.ts';
import { manifestRoutes } from './routes/manifests.ts';
import { jobControlRoutes } from './routes/job-control.ts';
import { jobRoutes } from './routes/jobs.ts';
import { nodeControlRoutes } from './routes/node-control.ts';
import { previewRoutes } from './routes/previews.ts';
import { resultRoutes } from './routes/results.ts';
import { storageRoutes } from './routes/storage.ts';
import { submitRoutes } from './routes/submit.ts';
import { taskOutputRoutes } from './routes/task-output.ts';
import { taskRoutes } from './routes/tasks.ts';
import { timeRoutes } from './routes/time.ts';
import { workerRoutes } from './routes/workers.ts';
import { webhookSweeper } from './webhooks.ts';
import { wakeWaitingNodes } from './work-signal.ts';

export const app = new Hono<AppEnv>()
  .use(async (c, next) => {
    c.set('config', readConfig(c.env));
    // D1 batches of requests running at the same time go as one (edge/batch-together.ts).
    const ctx = executionContext(c);
    // Nodes waiting for work, on any isolate, are woken through the WorkSignal Durable Object;
    // the answer does not wait for it (edge/work-signal.ts).
    c.set('wake', () => {
      const woken = wakeWaitingNodes(c.env);
      ctx?.waitUntil(woken);
    });
    c.env = { ...c.env, DB: groupCommitting(c.env.DB, { waitUntil: ctx ? (p) => ctx.waitUntil(p) : undefined }) };
    await next();
  })
  // Before every route: who is asking, and may they (edge/auth.ts).
  .use(authenticate)
  // After requests that may finish jobs: call their webhooks (edge/webhooks.ts).
  .use(webhookSweeper)
  .route('/', timeRoutes)
  .route('/', submitRoutes)
  .route('/', workerRoutes)
  .route('/', taskRoutes)
  .route('/', resultRoutes)
  .route('/', taskOutputRoutes)
  .route('/', blendRoutes)
  .route('/', blobRoutes)
  .route('/', blobJobRoutes)
  .route('/', manifestRoutes)
  .route('/', jobRoutes)
  .route('/', storageRoutes)
  .route('/', jobControlRoutes)
  .route('/', nodeControlRoutes)
  .route('/', previewRoutes)
  .route('/', docsRoutes)
  .route('/', addonRoutes);

app.notFound((c) => c.json({ error: `no such endpoint: ${c.req.method} ${new URL(c.req.url).pathname}` }, 404));

app.onError((err, c) => {
  if (err instanceof HTTPException) return err.getResponse();
  // Anything else is our bug, not the user's: log it whole, answer without internals.
  console.error(`${c.req.method} ${new URL(c.req.url).pathname} failed:`, err);
  return c.json({ error: 'internal error in the master; the request changed nothing it reported' }, 500);
});
