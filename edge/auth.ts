/**
 * Who may call what, and how often. One Hono middleware, mounted right after the configuration
 * and before every route, decides from the route a request matched:
 *
 *  - public routes (`GET /time`) need nothing;
 *  - node routes need the node's own credential, issued by `POST /register_worker`; the handler
 *    then checks that the worker id in the request is the credential's (`actAsWorker`);
 *  - `POST /register_worker` needs the enrolment token (FARM_NODE_TOKEN), or the node's own
 *    credential when an enrolled node registers again;
 *  - every other route, including any route added later and not listed here, needs a submitter
 *    token (FARM_SUBMIT_TOKEN, comma-separated so that tokens can be rotated one at a time).
 *
 * Secrets are compared in constant time: both sides are hashed with SHA-256 and the digests
 * compared with `crypto.subtle.timingSafeEqual`. Node credentials are stored only as SHA-256
 * hashes in `workers.credential_hash`.
 *
 * With FARM_ALLOW_ANONYMOUS=true (local development only) nothing is checked. Without it and
 * without tokens, the master answers 503 saying which secrets to set.
 *
 * Every authenticated request also counts against its credential's rate limit
 * (RATE_LIMIT_PER_MINUTE): a counter row per credential in D1, updated by one UPSERT, in a window
 * that opens with the first request after the previous window closed. For a node the same
 * statement looks the credential up, so authentication and counting cost one D1 round trip.
 */
import type { Context, MiddlewareHandler } from 'hono';
import { matchedRoutes } from 'hono/route';
import type { AppEnv } from './app-env.ts';
import type { FarmConfig } from './env.ts';
import { fail } from './errors.ts';

/** What a route requires. */
export type Access = 'public' | 'submitter' | 'node' | 'enrol' | 'node-or-submitter';

/** Who sent a request, once the middleware has checked the credential. */
export type Principal =
  | { kind: 'anonymous' }
  | { kind: 'public' }
  | { kind: 'submitter' }
  | { kind: 'enrolment' }
  | { kind: 'node'; workerId: string };

/**
 * Routes (method and path as registered) that do not take a submitter token. A route missing
 * from this table needs a submitter token, so a new route is closed until someone opens it here.
 * Pages that only serve static, data-free content (a dashboard's HTML, an OpenAPI document) may
 * be made public; anything that returns jobs, frames, logs or nodes may not.
 */
export const ROUTE_ACCESS: Readonly<Record<string, Access>> = {
  'GET /time': 'public',
  'POST /register_worker': 'enrol',
  'POST /get_job': 'node',
  'POST /update_task_status': 'node',
  'POST /upload_result': 'node',
  'PUT /tasks/:task_id/frames/:frame': 'node',
  'PUT /tasks/:task_id/log': 'node',
  'PUT /tasks/:task_id/frames/:frame/preview': 'node',
  'PUT /tasks/:task_id/output': 'node',
  'GET /tasks/:task_id/inputs/:n': 'node',
  // The dashboard's shell, script and styles and the API description hold no data: the
  // dashboard reads the API with the user's token (see routes/dashboard.ts).
  'GET /': 'public',
  'GET /dashboard.js': 'public',
  'GET /dashboard.css': 'public',
  'GET /openapi.json': 'public',
  'GET /docs': 'public',
  // Nodes fetch the blend of a task they hold; submitters may fetch any blend they sent.
  'GET /download_blend/:name': 'node-or-submitter',
};

/** The access rule of a registered route. */
export function routeAccess(method: string, path: string): Access {
  return ROUTE_ACCESS[`${method.toUpperCase()} ${path}`] ?? 'submitter';
}

/** Node credentials start with this, so the master looks only those up in D1. */
export const NODE_CREDENTIAL_PREFIX = 'farm_node_';

const RATE_WINDOW_MS = 60_000;
const encoder = new TextEncoder();

/** A fresh node credential: 256 random bits, base64url. */
export function newNodeCredential(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const base64 = btoa(String.fromCharCode(...bytes));
  return NODE_CREDENTIAL_PREFIX + base64.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function toHex(buffer: ArrayBuffer): string {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function digest(secret: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest('SHA-256', encoder.encode(secret));
}

/** Hex SHA-256 of a credential: what `workers.credential_hash` holds. */
export async function credentialHash(credential: string): Promise<string> {
  return toHex(await digest(credential));
}

/**
 * Whether `presented` (a SHA-256 digest) equals the digest of any of `secrets`. Every secret is
 * compared, whatever matched, and each comparison takes the same time.
 */
async function matchesAny(presented: ArrayBuffer, secrets: readonly string[]): Promise<boolean> {
  let matched = false;
  for (const secret of secrets) {
    const equal = crypto.subtle.timingSafeEqual(presented, await digest(secret));
    matched = equal || matched;
  }
  return matched;
}

/** The token of an `Authorization: Bearer <token>` header, or null when there is none. */
function bearerToken(c: Context<AppEnv>): string | null {
  const header = c.req.header('authorization');
  if (!header) return null;
  const match = /^Bearer[ \t]+(\S+)\s*$/i.exec(header);
  if (!match) fail(401, 'the Authorization header must be "Bearer <token>"', { 'www-authenticate': 'Bearer realm="farm"' });
  return match[1]!;
}

/** The route that will answer: the first matched route that is not middleware. */
function respondingRoute(c: Context<AppEnv>): { method: string; path: string } | null {
  return matchedRoutes(c).find((route) => route.method !== 'ALL') ?? null;
}

const WHAT_TO_SEND: Record<Exclude<Access, 'public'>, string> = {
  submitter: 'a submitter token (one of FARM_SUBMIT_TOKEN)',
  node: "the node's own credential, which POST /register_worker returned as node_token",
  enrol: 'the node enrolment token (FARM_NODE_TOKEN), or the credential this node was given when it enrolled',
  'node-or-submitter': "a submitter token, or a node's own credential",
};

function unauthorized(access: Exclude<Access, 'public'>, why: string): never {
  fail(401, `${why}: send Authorization: Bearer <token> with ${WHAT_TO_SEND[access]}`, {
    'www-authenticate': 'Bearer realm="farm"',
  });
}

const NOT_CONFIGURED =
  'set them as Worker secrets (npx wrangler secret put FARM_SUBMIT_TOKEN --env production, and FARM_NODE_TOKEN likewise); ' +
  'FARM_ALLOW_ANONYMOUS=true runs the master open, for local development only';

/** Refuses requests a misconfigured master cannot authenticate, saying what to configure. */
function assertConfigured(config: FarmConfig, access: Access, token: string | null): void {
  if (config.submitTokens.length === 0 && config.nodeToken === null) {
    fail(503, `this master has no tokens configured and refuses every request: ${NOT_CONFIGURED}`);
  }
  if (access === 'submitter' && config.submitTokens.length === 0) {
    fail(503, `FARM_SUBMIT_TOKEN is not set on this master, so no submitter can be authenticated: ${NOT_CONFIGURED}`);
  }
  // An enrolled node may register again with its own credential; a new node needs the token.
  if (access === 'enrol' && config.nodeToken === null && !token?.startsWith(NODE_CREDENTIAL_PREFIX)) {
    fail(503, `FARM_NODE_TOKEN is not set on this master, so no new render node can enrol: ${NOT_CONFIGURED}`);
  }
}

interface Counted {
  count: number;
  window_start: number;
}

function windowUpsert(select: string): string {
  // SET expressions all read the row as it was, so both CASEs test the old window.
  return `INSERT INTO rate_limits (key, window_start, count) ${select}
    ON CONFLICT (key) DO UPDATE SET
      count = CASE WHEN rate_limits.window_start > ?1 - ?2 THEN rate_limits.count + 1 ELSE 1 END,
      window_start = CASE WHEN rate_limits.window_start > ?1 - ?2 THEN rate_limits.window_start ELSE ?1 END
    RETURNING key, window_start, count`;
}

/** Counts one request against `key`'s window. */
async function countRequest(db: D1Database, key: string, now: number): Promise<Counted> {
  const row = await db
    .prepare(windowUpsert(`SELECT ?3, ?1, 1 WHERE true`))
    .bind(now, RATE_WINDOW_MS, key)
    .first<Counted>();
  return row!;
}

/**
 * Finds the node a credential belongs to and, when the rate limit is on, counts the request in
 * the same statement (an unknown credential inserts nothing). Null: no node has this credential.
 */
async function identifyNode(db: D1Database, hash: string, now: number, limited: boolean): Promise<{ workerId: string; counted: Counted | null } | null> {
  if (!limited) {
    const row = await db.prepare(`SELECT id FROM workers WHERE credential_hash = ?`).bind(hash).first<{ id: string }>();
    return row ? { workerId: row.id, counted: null } : null;
  }
  const row = await db
    .prepare(windowUpsert(`SELECT 'n:' || id, ?1, 1 FROM workers WHERE credential_hash = ?3`))
    .bind(now, RATE_WINDOW_MS, hash)
    .first<Counted & { key: string }>();
  return row ? { workerId: row.key.slice(2), counted: row } : null;
}

function assertWithinLimit(counted: Counted, config: FarmConfig, now: number): void {
  if (counted.count <= config.rateLimitPerMinute) return;
  const retryAfterS = Math.max(1, Math.ceil((counted.window_start + RATE_WINDOW_MS - now) / 1000));
  fail(
    429,
    `too many requests with this credential: the limit is ${config.rateLimitPerMinute} per minute (RATE_LIMIT_PER_MINUTE); try again in ${retryAfterS} s`,
    { 'retry-after': String(retryAfterS) },
  );
}

/** Who the credential belongs to, checked against what the route allows. */
async function authenticateToken(c: Context<AppEnv>, access: Exclude<Access, 'public'>, token: string, now: number): Promise<Principal> {
  const config = c.get('config');
  const limited = config.rateLimitPerMinute > 0;
  const presented = await digest(token);
  const rateKey = toHex(presented).slice(0, 16);

  let principal: Principal;
  let counted: Counted | null = null;
  if (await matchesAny(presented, config.submitTokens)) {
    principal = { kind: 'submitter' };
    if (access === 'node' || access === 'enrol') {
      fail(403, `a submitter token cannot be used here: this endpoint takes ${WHAT_TO_SEND[access]}`);
    }
    if (limited) counted = await countRequest(c.env.DB, `s:${rateKey}`, now);
  } else if (await matchesAny(presented, config.nodeToken === null ? [] : [config.nodeToken])) {
    principal = { kind: 'enrolment' };
    if (access !== 'enrol') {
      fail(403, `the enrolment token only registers nodes (POST /register_worker): this endpoint takes ${WHAT_TO_SEND[access]}`);
    }
    if (limited) counted = await countRequest(c.env.DB, `e:${rateKey}`, now);
  } else if (token.startsWith(NODE_CREDENTIAL_PREFIX)) {
    const node = await identifyNode(c.env.DB, toHex(presented), now, limited);
    if (!node) {
      unauthorized(access, 'this node credential is not known to the master (it was revoked, or the database was reset); enrol again with the enrolment token');
    }
    principal = { kind: 'node', workerId: node.workerId };
    if (access === 'submitter') fail(403, `a node credential cannot be used here: this endpoint takes ${WHAT_TO_SEND.submitter}`);
    counted = node.counted;
  } else {
    unauthorized(access, 'the token is not valid for this master');
  }
  if (counted) assertWithinLimit(counted, config, now);
  return principal;
}

/** The middleware: sets `principal`, or answers 401, 403, 429 or 503. */
export const authenticate: MiddlewareHandler<AppEnv> = async (c, next) => {
  const config = c.get('config');
  c.set('actingWorkerId', undefined);
  if (config.allowAnonymous) {
    c.set('principal', { kind: 'anonymous' });
    return next();
  }
  const route = respondingRoute(c);
  // No route: the request ends in a 404, but only a caller with a token learns that.
  const access = route ? routeAccess(route.method, route.path) : 'submitter';
  const token = access === 'public' ? null : bearerToken(c);
  assertConfigured(config, access, token);
  if (access === 'public') {
    c.set('principal', { kind: 'public' });
    return next();
  }
  if (token === null) unauthorized(access, 'this endpoint needs a credential');
  const principal = await authenticateToken(c, access, token, Date.now());
  c.set('principal', principal);
  await next();
  // Safety net: a node route that answered without checking whose worker id it acted for is a
  // bug that would let one node act as another; refuse the answer rather than send it.
  if (principal.kind === 'node' && access === 'node' && c.get('actingWorkerId') === undefined && c.res.status < 400) {
    console.error(`${c.req.method} ${route?.path} answered a node without calling actAsWorker`);
    c.res = new Response(JSON.stringify({ error: 'internal error in the master: the request was not checked against the node credential' }), {
      status: 500,
      headers: { 'content-type': 'application/json; charset=utf-8' },
    });
  }
};

/**
 * Called by node routes with the worker id the request acts for: a node may act only as
 * itself. In anonymous mode anything goes.
 */
export function actAsWorker(c: Context<AppEnv>, workerId: string): void {
  const principal = c.get('principal');
  if (principal.kind === 'node' && principal.workerId !== workerId) {
    fail(403, `this node credential belongs to worker ${principal.workerId}; it cannot act for worker ${workerId}`);
  }
  c.set('actingWorkerId', workerId);
}

/**
 * A node may download a job's input only while it holds a lease on one of the job's tasks:
 * enrolling does not open every user's files to every node. Submitters may download any.
 */
export async function assertMayDownloadInput(c: Context<AppEnv>, blendFile: string): Promise<void> {
  const principal = c.get('principal');
  if (principal.kind !== 'node') return;
  c.set('actingWorkerId', principal.workerId);
  const held = await c.env.DB.prepare(
    // Running tasks are about as many as nodes, and the (status, ...) index finds them.
    `SELECT 1 FROM tasks t JOIN jobs j ON j.id = t.job_id
     WHERE t.status = 'running' AND t.worker_id = ?2 AND j.blend_file = ?1 LIMIT 1`,
  )
    .bind(blendFile, principal.workerId)
    .first();
  if (!held) {
    fail(403, `worker ${principal.workerId} holds no task of a job that renders ${blendFile}: a node may download only the input of a task it was given`);
  }
}
