/**
 * `farm submit`'s file-by-file upload (cli/project-upload.ts) against a small fake master: the
 * manifest it sends names every file by hash at its project path, hashes as the master would
 * (protocol/manifest.ts), and only the files the master says it lacks are uploaded.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';
import { planBundle } from '../../cli/bundle.ts';
import { uploadProject } from '../../cli/project-upload.ts';
import { FarmClient } from '../../protocol/client.ts';
import { canonicalManifest, manifestSchema, manifestSha256, type Manifest } from '../../protocol/manifest.ts';

const sha = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');
const body = async (req: IncomingMessage) => {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
};

describe('uploading a project file by file', () => {
  const dir = tempDir('project-upload');
  /** Blobs the fake master holds, and the part bodies it received, by hash. */
  const held = new Set<string>();
  const received = new Map<string, Buffer>();
  let manifests: Manifest[] = [];
  let url = '';
  const server = createServer(async (req, res) => {
    const answer = (status: number, value: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
    const path = req.url ?? '';
    if (req.method === 'POST' && path === '/manifests') {
      const manifest = manifestSchema.parse(JSON.parse((await body(req)).toString()));
      manifests.push(manifest);
      const missing = manifest.files.filter((f) => !held.has(f.sha256)).map((f) => ({ sha256: f.sha256, size: f.size }));
      return answer(200, {
        manifest_sha256: await manifestSha256(canonicalManifest(manifest)),
        files: manifest.files.length,
        total_bytes: manifest.files.reduce((s, f) => s + f.size, 0),
        missing,
        missing_bytes: missing.reduce((s, f) => s + f.size, 0),
      });
    }
    const blob = /^\/blobs\/([0-9a-f]{64})(.*)$/.exec(path);
    if (!blob) return answer(404, { error: 'no route' });
    const [, hash, rest] = blob as unknown as [string, string, string];
    if (req.method === 'HEAD') return res.writeHead(held.has(hash) ? 200 : 404).end();
    if (req.method === 'POST' && rest === '/uploads') {
      const { size } = JSON.parse((await body(req)).toString()) as { size: number };
      return answer(201, {
        sha256: hash,
        size,
        upload_id: '00000000-0000-4000-8000-000000000000',
        part_size: 5 * 1024 * 1024,
        part_count: 1,
        parts_done: [],
        blob_exists: false,
      });
    }
    if (req.method === 'PUT') {
      const bytes = await body(req);
      received.set(hash, bytes);
      return answer(200, { part_number: 1, size: bytes.length });
    }
    if (req.method === 'POST' && rest.endsWith('/complete')) {
      held.add(hash);
      return answer(201, { sha256: hash, size: received.get(hash)!.length });
    }
    return answer(404, { error: 'no route' });
  });

  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    mkdirSync(join(dir, 'tex'));
    writeFileSync(join(dir, 'scene.blend'), 'BLENDER-v1');
    writeFileSync(join(dir, 'tex', 'wood.png'), 'wood');
    writeFileSync(join(dir, 'tex', 'stone.png'), 'stone');
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const send = async () => {
    const client = new FarmClient({ baseUrl: url });
    try {
      const plan = planBundle(join(dir, 'scene.blend'), [join(dir, 'tex', 'wood.png'), join(dir, 'tex', 'stone.png')]);
      return await uploadProject({ client, plan, parallel: 2, signal: new AbortController().signal, progress: false, say: () => {} });
    } finally {
      await client.close();
    }
  };

  it('sends every file the first time, then only the changed .blend, then nothing', async () => {
    const first = await send();
    expect(manifests[0]).toEqual({
      version: 1,
      main_blend: 'scene.blend',
      files: [
        { path: 'scene.blend', sha256: sha('BLENDER-v1'), size: 10 },
        { path: 'tex/stone.png', sha256: sha('stone'), size: 5 },
        { path: 'tex/wood.png', sha256: sha('wood'), size: 4 },
      ],
    });
    expect(first).toMatchObject({ files: 3, filesSent: 3, sentBytes: 19, totalBytes: 19 });
    expect([...received.keys()].sort()).toEqual([sha('BLENDER-v1'), sha('stone'), sha('wood')].sort());

    received.clear();
    manifests = [];
    writeFileSync(join(dir, 'scene.blend'), 'BLENDER-v2!');
    const second = await send();
    expect(second).toMatchObject({ filesSent: 1, sentBytes: 11 });
    expect([...received.keys()]).toEqual([sha('BLENDER-v2!')]);
    expect(second.manifestSha256).not.toBe(first.manifestSha256);

    received.clear();
    const third = await send();
    expect(third).toMatchObject({ filesSent: 0, sentBytes: 0, manifestSha256: second.manifestSha256 });
    expect(received.size).toBe(0);
  });
});
