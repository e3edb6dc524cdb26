/** Mounts the routes and turns every error into `{ "error": "..." }`. */
import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { AppEnv } from './app-env.ts';
import { readConfig } from './env.ts';
import { blendRoutes } from './routes/blends.ts';
import { jobRoutes } from './routes/jobs.ts';
import { resultRoutes } from './routes/results.ts';
import { submitRoutes } from './routes/submit.ts';
import { taskRoutes } from './routes/tasks.ts';
import { timeRoutes } from './routes/time.ts';
import { workerRoutes } from './routes/workers.ts';
import { wakeWaiters } from './work-signal.ts';

export const app = new Hono<AppEnv>()
  .use(async (c, next) => {
    c.set('config', readConfig(c.env));
    c.set('wake', wakeWaiters);
    await next();
  })
  .route('/', timeRoutes)
  .route('/', submitRoutes)
  .route('/', workerRoutes)
  .route('/', taskRoutes)
  .route('/', resultRoutes)
  .route('/', blendRoutes)
  .route('/', jobRoutes);

app.notFound((c) => c.json({ error: `no such endpoint: ${c.req.method} ${new URL(c.req.url).pathname}` }, 404));

app.onError((err, c) => {
  if (err instanceof HTTPException) return err.getResponse();
  // Anything else is our bug, not the user's: log it whole, answer without internals.
  console.error(`${c.req.method} ${new URL(c.req.url).pathname} failed:`, err);
  return c.json({ error: 'internal error in the master; the request changed nothing it reported' }, 500);
});

export type AppType = typeof app;
