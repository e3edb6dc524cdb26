/**
 * The API described: the OpenAPI document (`/openapi.json`) and the same as a page people read
 * (`/docs`). Both are public: they hold no data (see ROUTE_ACCESS in auth.ts). The dashboard is
 * not served here: it is the Worker's static assets (dashboard/, wrangler.toml [assets]).
 */
import { Hono } from 'hono';
import type { AppEnv } from '../app-env.ts';
import { renderApiDocs } from '../api-docs.ts';
import { buildOpenApi } from '../openapi.ts';

/** The page is HTML and the dashboard's style sheet: no script, no images, no forms. */
const DOCS_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': "default-src 'none'; style-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // Short: a new deployment's page is picked up within a minute.
  'cache-control': 'public, max-age=60',
};

let openApi: Record<string, unknown> | null = null;

export const docsRoutes = new Hono<AppEnv>()
  .get('/openapi.json', (c) => {
    // Built once per isolate: the schemas do not change while it runs.
    openApi ??= buildOpenApi();
    return c.json({ ...openApi, servers: [{ url: new URL(c.req.url).origin }] });
  })
  .get('/docs', (c) => {
    openApi ??= buildOpenApi();
    return c.body(renderApiDocs(openApi), 200, DOCS_HEADERS);
  });
