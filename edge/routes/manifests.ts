/**
 * Projects stored file by file (see manifest-store.ts):
 *
 *   POST /manifests                         {version, main_blend, files}  store it; which blobs are missing
 *   GET  /manifests/{sha256}/files/{blob}   one of its files, for a node holding a task of a job that renders it
 *
 * The manifest itself is fetched like any job input, `GET /download_blend/{sha256}.manifest`.
 */
import { Hono } from 'hono';
import { MAX_MANIFEST_JSON_BYTES, manifestSchema } from '../../protocol/manifest.ts';
import { SHA256_HEX } from '../../protocol/schemas.ts';
import type { AppEnv } from '../app-env.ts';
import { assertMayDownloadInput } from '../auth.ts';
import { findBlob } from '../blob-store.ts';
import { manifestNames } from '../db/manifests.ts';
import { fail } from '../errors.ts';
import { storeManifest } from '../manifest-store.ts';
import { objectResponse } from '../object-response.ts';
import { inputFileName } from '../storage-keys.ts';
import { readJson } from '../validation.ts';

function requireSha256(value: string | undefined, what: string): string {
  if (!value || !SHA256_HEX.test(value)) fail(400, `${what} must be a SHA-256 in lowercase hex (64 characters)`);
  return value;
}

export const manifestRoutes = new Hono<AppEnv>()
  .post('/manifests', async (c) => {
    const manifest = await readJson(c, manifestSchema, Math.max(c.get('config').maxJsonBytes, MAX_MANIFEST_JSON_BYTES));
    return c.json(await storeManifest(c.env.DB, c.env.FILES, c.get('config'), manifest), 200);
  })
  .get('/manifests/:sha256/files/:blob', async (c) => {
    const sha256 = requireSha256(c.req.param('sha256'), 'the manifest');
    const blobSha = requireSha256(c.req.param('blob'), 'the file');
    await assertMayDownloadInput(c, inputFileName(sha256, 'manifest'));
    if (!(await manifestNames(c.env.DB, sha256, blobSha))) fail(404, `manifest ${sha256.slice(0, 12)} lists no file ${blobSha}`);
    const blob = await findBlob(c.env.DB, c.env.FILES, blobSha);
    if (!blob) fail(404, `no blob ${blobSha} on this master`);
    return objectResponse(c, c.env.FILES, blob.key, blobSha);
  });
