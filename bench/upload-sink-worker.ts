/**
 * A bare Worker for bench/upload-sink.ts: receives the same part uploads as the master's blob API
 * and does one thing with them, so the memory of `wrangler dev`'s workerd can be pinned on
 * receiving bytes, on local R2 storing them, or on reading them back.
 *
 *   PUT  /discard                 reads the body in JavaScript, a chunk at a time, and drops it
 *   PUT  /digest                  pipes the body into a SHA-256 DigestStream
 *   POST /r2/start                starts an R2 multipart upload of the object `big`
 *   PUT  /r2/{upload_id}/{n}      streams the body into part n (as edge/blob-store.ts storePart)
 *   POST /r2/{upload_id}/complete body: [{partNumber, etag}]
 *   POST /r2/read?chunk_mib=4     reads `big` in ranges of that size into a SHA-256 (as digestObject)
 */
import { pipeObject } from '../edge/object-response.ts';

interface Env {
  FILES: R2Bucket;
}

const KEY = 'big';

function hex(buffer: ArrayBuffer): string {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const path = new URL(request.url).pathname.split('/').filter(Boolean);
    if (request.method === 'PUT' && path[0] === 'discard') {
      let bytes = 0;
      await request.body!.pipeTo(new WritableStream({ write: (chunk: Uint8Array) => void (bytes += chunk.byteLength) }));
      return Response.json({ bytes });
    }
    if (request.method === 'PUT' && path[0] === 'digest') {
      const digest = new crypto.DigestStream('SHA-256');
      await request.body!.pipeTo(digest);
      return Response.json({ sha256: hex(await digest.digest) });
    }
    if (path[0] === 'r2' && path[1] === 'start') {
      const upload = await env.FILES.createMultipartUpload(KEY);
      return Response.json({ upload_id: upload.uploadId });
    }
    if (path[0] === 'r2' && path[1] === 'read') {
      const head = await env.FILES.head(KEY);
      if (!head) return new Response('no object', { status: 404 });
      const digest = new crypto.DigestStream('SHA-256');
      const chunkMib = Number(new URL(request.url).searchParams.get('chunk_mib') ?? '4');
      await pipeObject(env.FILES, KEY, head.size, digest, chunkMib * 2 ** 20);
      return Response.json({ sha256: hex(await digest.digest), size: head.size });
    }
    if (path[0] === 'r2' && path.length === 3) {
      const upload = env.FILES.resumeMultipartUpload(KEY, path[1]!);
      if (path[2] === 'complete') {
        const object = await upload.complete(await request.json<R2UploadedPart[]>());
        return Response.json({ size: object.size });
      }
      return Response.json(await upload.uploadPart(Number(path[2]), request.body!));
    }
    return new Response('not found', { status: 404 });
  },
};
