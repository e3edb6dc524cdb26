/** `GET /download_blend/{name}`: streams a stored .blend to a node, with Range for resuming. */
import { Hono } from 'hono';
import type { AppEnv } from '../app-env.ts';
import { fail } from '../errors.ts';
import { BLEND_FILE_NAME } from '../storage-keys.ts';

export const blendRoutes = new Hono<AppEnv>().get('/download_blend/:name', async (c) => {
  const name = c.req.param('name');
  if (!BLEND_FILE_NAME.test(name)) {
    fail(400, 'blend_file_name must be the blend_file a task names (64 hex characters then ".blend"), without paths');
  }
  const key = `jobs/${name}`;
  const range = c.req.header('range');
  const object = await c.env.FILES.get(key, range ? { range: c.req.raw.headers } : {});
  if (!object) fail(404, `no blend file named ${name}`);
  const headers = new Headers({
    'content-type': 'application/octet-stream',
    etag: object.httpEtag,
    'accept-ranges': 'bytes',
    'content-disposition': `attachment; filename="${name}"`,
  });
  const r = object.range as { offset?: number; length?: number } | undefined;
  if (range && r && r.offset !== undefined) {
    const length = r.length ?? object.size - r.offset;
    headers.set('content-range', `bytes ${r.offset}-${r.offset + length - 1}/${object.size}`);
    headers.set('content-length', String(length));
    return new Response(object.body, { status: 206, headers });
  }
  headers.set('content-length', String(object.size));
  return new Response(object.body, { headers });
});
