/**
 * The master's routes as the app itself declares them (`app.routes`), with a concrete path for
 * each, so that tests of authentication cover every route, including ones added later.
 */
import { app } from '../../edge/app.ts';

/**
 * Routes anyone may call. Keep this short: only what returns no user's data. The master's
 * ROUTE_ACCESS must open exactly these (routes.test.ts checks), so opening a route takes a change
 * here too, where a reviewer sees it.
 */
export const PUBLIC_ROUTES = new Set([
  'GET /time',
  // The API description: static, no data. (The dashboard's files are static assets that never
  // reach the Worker: test/e2e/dashboard.test.ts.)
  'GET /openapi.json',
  'GET /docs',
  // The Blender add-on: code, no data.
  'GET /addon.zip',
]);

const SAMPLE_ID = '0b7d6a8e-3f1c-4c52-9a43-5d2e8f0a1b2c';
const SAMPLE_SHA256 = 'ab'.repeat(32);

export interface AppRoute {
  method: string;
  /** The pattern as registered, e.g. `/jobs/:job_id/frames/:frame`. */
  path: string;
  /** `METHOD /pattern`. */
  key: string;
}

/** A concrete path for a route pattern: every parameter gets a valid-looking value. */
export function concretePath(pattern: string): string {
  return pattern
    .replace(/:([A-Za-z_]+)(\{[^}]*\})?/g, (_m, name: string) => {
      if (name === 'sha256') return SAMPLE_SHA256;
      if (name === 'name') return `${SAMPLE_SHA256}.blend`;
      if (name === 'frame' || name === 'n') return '1';
      return SAMPLE_ID;
    })
    .replace(/\*/g, 'x');
}

/** Every (method, path) the app answers, middleware left out. */
export function appRoutes(): AppRoute[] {
  const seen = new Map<string, AppRoute>();
  for (const route of app.routes) {
    if (route.method === 'ALL') continue;
    const key = `${route.method} ${route.path}`;
    seen.set(key, { method: route.method, path: route.path, key });
  }
  return [...seen.values()];
}

/** A body of the kind most routes take, so that a 401 cannot be a side effect of a missing one. */
export function plausibleInit(method: string): RequestInit {
  if (method === 'GET' || method === 'HEAD' || method === 'DELETE') return { method };
  return { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ worker_id: SAMPLE_ID, name: 'x' }) };
}
