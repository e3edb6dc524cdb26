/**
 * Blobs by SHA-256 and their chunked, resumable uploads (see blob-store.ts):
 *
 *   GET|HEAD /blobs/{sha256}                                   the stored file (404: not here)
 *   POST     /blobs/{sha256}/uploads            {size}         start or resume an upload
 *   PUT      /blobs/{sha256}/uploads/{id}/parts/{n}  raw body  store part n
 *   POST     /blobs/{sha256}/uploads/{id}/complete             verify the SHA-256, record the blob
 *   DELETE   /blobs/{sha256}/uploads/{id}                       abort
 */
import { Hono } from 'hono';
import { SHA256_HEX, startUploadSchema, type BlobInfo } from '../../protocol/schemas.ts';
import type { AppEnv } from '../app-env.ts';
import { abortUpload, completeUpload, findBlob, requireUpload, startUpload, storePart } from '../blob-store.ts';
import { uploadExists } from '../db/blobs.ts';
import { fail } from '../errors.ts';
import { objectResponse } from '../object-response.ts';
import { contentLength, readJson, requireId } from '../validation.ts';

function requireSha256(value: string | undefined): string {
  if (!value || !SHA256_HEX.test(value)) fail(400, 'the blob must be named by its SHA-256 in lowercase hex (64 characters)');
  return value;
}

function partNumber(value: string): number {
  if (!/^\d{1,5}$/.test(value)) fail(400, 'the part number must be a whole number from 1');
  return Number(value);
}

export const blobRoutes = new Hono<AppEnv>()
  .get('/blobs/:sha256', async (c) => {
    const sha256 = requireSha256(c.req.param('sha256'));
    const blob = await findBlob(c.env.DB, c.env.FILES, sha256);
    if (!blob) fail(404, `no blob ${sha256} on this master`);
    if (c.req.method === 'HEAD') {
      return new Response(null, { headers: { 'content-length': String(blob.size), 'accept-ranges': 'bytes' } });
    }
    return objectResponse(c, c.env.FILES, blob.key, sha256);
  })
  .post('/blobs/:sha256/uploads', async (c) => {
    const sha256 = requireSha256(c.req.param('sha256'));
    const body = await readJson(c, startUploadSchema, c.get('config').maxJsonBytes);
    const { state, created } = await startUpload(c.env.DB, c.env.FILES, c.get('config'), sha256, body);
    return c.json(state, created ? 201 : 200);
  })
  .put('/blobs/:sha256/uploads/:upload_id/parts/:n', async (c) => {
    const sha256 = requireSha256(c.req.param('sha256'));
    const uploadId = requireId(c.req.param('upload_id'), 'upload_id');
    const n = partNumber(c.req.param('n'));
    const length = contentLength(c);
    if (length === null) fail(411, 'a part needs a Content-Length header (the body is streamed into R2 as it arrives)');
    if (length > c.get('config').maxUploadBytes)
      fail(413, `a part of ${length} bytes is over the limit of ${c.get('config').maxUploadBytes} bytes per request`);
    const body = c.req.raw.body;
    if (!body) fail(400, 'the part is empty');
    const upload = await requireUpload(c.env.DB, sha256, uploadId);
    return c.json(await storePart(c.env.DB, c.env.FILES, upload, n, body, length));
  })
  .post('/blobs/:sha256/uploads/:upload_id/complete', async (c) => {
    const sha256 = requireSha256(c.req.param('sha256'));
    const uploadId = requireId(c.req.param('upload_id'), 'upload_id');
    if (!(await uploadExists(c.env.DB, uploadId))) {
      // Completing twice (the first answer was lost) is fine once the blob is there.
      const blob = await findBlob(c.env.DB, c.env.FILES, sha256);
      if (blob) return c.json({ sha256, size: blob.size } satisfies BlobInfo, 200);
    }
    const blob = await completeUpload(c.env.DB, c.env.FILES, await requireUpload(c.env.DB, sha256, uploadId));
    return c.json({ sha256: blob.sha256, size: blob.size } satisfies BlobInfo, 201);
  })
  .delete('/blobs/:sha256/uploads/:upload_id', async (c) => {
    const sha256 = requireSha256(c.req.param('sha256'));
    const uploadId = requireId(c.req.param('upload_id'), 'upload_id');
    await abortUpload(c.env.DB, c.env.FILES, await requireUpload(c.env.DB, sha256, uploadId));
    return c.json({ upload_id: uploadId, aborted: true });
  });
