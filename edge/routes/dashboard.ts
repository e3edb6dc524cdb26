/**
 * The pages people open in a browser: the dashboard (`/`, its script and style sheet), the API
 * page (`/docs`) and the OpenAPI document (`/openapi.json`). None of them holds data: the
 * dashboard reads the API with the user's token, so they are public (see ROUTE_ACCESS in auth.ts).
 */
import { Hono } from 'hono';
import type { AppEnv } from '../app-env.ts';
import { renderApiDocs } from '../dashboard/api-docs.ts';
import { DASHBOARD_HTML } from '../dashboard/page.ts';
import { DASHBOARD_JS } from '../dashboard/script.ts';
import { DASHBOARD_CSS } from '../dashboard/styles.ts';
import { buildOpenApi } from '../openapi.ts';

/** Only our own script, styles, API and images (previews come back as blob: URLs with a token). */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const pageHeaders = (contentType: string) => ({
  'content-type': contentType,
  'content-security-policy': CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // Short: a new deployment's dashboard is picked up within a minute.
  'cache-control': 'public, max-age=60',
});

let openApi: Record<string, unknown> | null = null;

export const dashboardRoutes = new Hono<AppEnv>()
  .get('/', (c) => c.body(DASHBOARD_HTML, 200, pageHeaders('text/html; charset=utf-8')))
  .get('/dashboard.js', (c) => c.body(DASHBOARD_JS, 200, pageHeaders('text/javascript; charset=utf-8')))
  .get('/dashboard.css', (c) => c.body(DASHBOARD_CSS, 200, pageHeaders('text/css; charset=utf-8')))
  .get('/openapi.json', (c) => {
    // Built once per isolate: the schemas do not change while it runs.
    openApi ??= buildOpenApi();
    return c.json({ ...openApi, servers: [{ url: new URL(c.req.url).origin }] });
  })
  .get('/docs', (c) => {
    openApi ??= buildOpenApi();
    return c.body(renderApiDocs(openApi), 200, pageHeaders('text/html; charset=utf-8'));
  });
