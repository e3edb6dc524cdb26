/** The master Worker's entry point: HTTP requests, the cron sweeps, and the wake-up Durable Object. */
import { app } from './app.ts';
import { runScheduledWork } from './cron.ts';
import type { Env } from './env.ts';

export { WorkSignal } from './work-signal-object.ts';

export default {
  fetch: app.fetch,
  scheduled(controller, env, ctx) {
    ctx.waitUntil(runScheduledWork(env, controller.scheduledTime));
  },
} satisfies ExportedHandler<Env>;
