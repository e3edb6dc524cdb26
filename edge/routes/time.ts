import { Hono } from 'hono';
import type { AppEnv } from '../app-env.ts';

/** `GET /time`: the master's clock, for nodes to measure their skew. */
export const timeRoutes = new Hono<AppEnv>().get('/time', (c) => {
  const now = Date.now();
  return c.json({ time: new Date(now).toISOString(), epoch_ms: now });
});
