/**
 * `GET /download_blend/{name}`: streams a job's input to a node, with Range for resuming.
 * `<sha256>.blend` is a .blend, `<sha256>.zip` a project archive; both are found by hash, whether
 * the seed's `POST /submit_job` stored them or a chunked blob upload did.
 */
import { Hono } from 'hono';
import type { AppEnv } from '../app-env.ts';
import { assertMayDownloadInput } from '../auth.ts';
import { findBlob } from '../blob-store.ts';
import { fail } from '../errors.ts';
import { objectResponse } from '../object-response.ts';
import { BLEND_FILE_NAME } from '../storage-keys.ts';

export const blendRoutes = new Hono<AppEnv>().get('/download_blend/:name', async (c) => {
  const name = c.req.param('name');
  if (!BLEND_FILE_NAME.test(name)) {
    fail(400, 'blend_file_name must be the blend_file a task names (64 hex characters then ".blend" or ".zip"), without paths');
  }
  await assertMayDownloadInput(c, name);
  const blob = await findBlob(c.env.DB, c.env.FILES, name.slice(0, 64));
  if (!blob) fail(404, `no blend file named ${name}`);
  return objectResponse(c, c.env.FILES, blob.key, name);
});
