import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';

/**
 * Throws an HTTP error whose body is `{ "error": message }`. Handlers throw; `app.onError`
 * turns it into the response, so every error on the wire has one shape.
 */
export function fail(status: ContentfulStatusCode, message: string): never {
  throw new HTTPException(status, {
    res: new Response(JSON.stringify({ error: message }), {
      status,
      headers: { 'content-type': 'application/json; charset=utf-8' },
    }),
  });
}
