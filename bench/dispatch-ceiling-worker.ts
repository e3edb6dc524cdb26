/**
 * A bare Worker for bench/dispatch-ceiling.ts: each route does the least that one kind of claim
 * design must do per request, with no framework, validation or scheduling around it, so that its
 * rate against `GET /noop` bounds what any claim of that design can reach under `wrangler dev`.
 *
 *   GET  /noop        answers the time (the master's `GET /time`)
 *   POST /json        reads a small JSON body and answers JSON (what a claim adds before storage)
 *   POST /d1-read     + one D1 read by primary key
 *   POST /d1-write    + one D1 write (a counter, as a claim advances a cursor)
 *   POST /d1-batch    + one D1 batch of ten trivial statements (a claim is one batch of ten)
 *   POST /do-memory   + one Durable Object RPC that only increments a number in memory
 *   POST /do-sql      + one Durable Object RPC that increments a number in its SQLite storage
 *   PUT  /r2-put      + stores its body (a tiny frame) as an R2 object, as a frame upload must
 *   POST /setup       creates the D1 table
 */
import { DurableObject } from 'cloudflare:workers';

interface Env {
  DB: D1Database;
  FILES: R2Bucket;
  CURSOR: DurableObjectNamespace<Cursor>;
}

/** A job cursor held by a Durable Object: in memory only, or in its own SQLite storage. */
export class Cursor extends DurableObject<Env> {
  private next = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS cursor (id INTEGER PRIMARY KEY, next INTEGER NOT NULL)');
    ctx.storage.sql.exec('INSERT OR IGNORE INTO cursor VALUES (1, 0)');
  }

  inMemory(): number {
    return ++this.next;
  }

  stored(): number {
    return this.ctx.storage.sql.exec<{ next: number }>('UPDATE cursor SET next = next + 1 WHERE id = 1 RETURNING next').one().next;
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const route = new URL(request.url).pathname;
    if (route === '/noop' && request.method === 'GET') return Response.json({ now: new Date().toISOString() });
    if (route === '/r2-put' && request.method === 'PUT') {
      const stored = await env.FILES.put(`frames/${crypto.randomUUID()}.png`, request.body, { httpMetadata: { contentType: 'image/png' } });
      return Response.json({ size: stored!.size }, { status: 201 });
    }
    if (request.method !== 'POST') return new Response('not found', { status: 404 });
    if (route === '/setup') {
      await env.DB.batch([
        env.DB.prepare('CREATE TABLE IF NOT EXISTS cursor (id INTEGER PRIMARY KEY, next INTEGER NOT NULL)'),
        env.DB.prepare('INSERT OR IGNORE INTO cursor VALUES (1, 0)'),
      ]);
      return Response.json({ ok: true });
    }
    const body = await request.json<{ worker_id: string }>();
    const cursor = () => env.CURSOR.get(env.CURSOR.idFromName('job'));
    switch (route) {
      case '/json':
        return Response.json({ worker_id: body.worker_id, next: 0 });
      case '/d1-read':
        return Response.json({ worker_id: body.worker_id, next: await env.DB.prepare('SELECT next FROM cursor WHERE id = 1').first('next') });
      case '/d1-write':
        return Response.json({
          worker_id: body.worker_id,
          next: await env.DB.prepare('UPDATE cursor SET next = next + 1 WHERE id = 1 RETURNING next').first('next'),
        });
      case '/d1-batch': {
        const statements = [env.DB.prepare('UPDATE cursor SET next = next + 1 WHERE id = 1 RETURNING next')];
        for (let i = 0; i < 9; i++) statements.push(env.DB.prepare('SELECT next FROM cursor WHERE id = ?').bind(1));
        const [first] = await env.DB.batch<{ next: number }>(statements);
        return Response.json({ worker_id: body.worker_id, next: first!.results[0]!.next });
      }
      case '/do-memory':
        return Response.json({ worker_id: body.worker_id, next: await cursor().inMemory() });
      case '/do-sql':
        return Response.json({ worker_id: body.worker_id, next: await cursor().stored() });
    }
    return new Response('not found', { status: 404 });
  },
};
