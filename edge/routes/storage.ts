/** `GET /jobs/{job_id}/storage`: a job's frames as D1 records them against what R2 holds. */
import { Hono } from 'hono';
import type { AppEnv } from '../app-env.ts';
import { auditJobStorage } from '../frame-audit.ts';
import { requireJobRow } from '../job-status.ts';
import { requireId } from '../validation.ts';

export const storageRoutes = new Hono<AppEnv>().get('/jobs/:job_id/storage', async (c) => {
  const jobId = requireId(c.req.param('job_id'), 'job_id');
  await requireJobRow(c.env.DB, jobId);
  return c.json(await auditJobStorage(c.env.DB, c.env.FILES, jobId));
});
