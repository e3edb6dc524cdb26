import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';

/**
 * Throws an HTTP error whose body is `{ "error": message }`. Handlers throw; `app.onError`
 * turns it into the response, so every error on the wire has one shape. `headers` adds e.g.
 * `Retry-After` to a 429 or `WWW-Authenticate` to a 401.
 */
export function fail(status: ContentfulStatusCode, message: string, headers: Record<string, string> = {}): never {
  throw new HTTPException(status, {
    // The message too, for logs of errors that never become a response (a cron sweep's).
    message,
    res: new Response(JSON.stringify({ error: message }), {
      status,
      headers: { ...headers, 'content-type': 'application/json; charset=utf-8' },
    }),
  });
}
