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
 * With FARM_ALLOW_ANONYMOUS=true (local development only: `npm start`, `npm run dev`) no
 * credential is checked, and the master serves only this machine: a request whose Host is not a
 * loopback name (localhost, *.localhost, 127.x.x.x, [::1]) gets 403, public routes included.
 * An open master on the LAN would take jobs from anyone there, and a web page the developer
 * visits could reach it through DNS rebinding (its own domain resolved to 127.0.0.1 keeps that
 * domain in Host). Without anonymous mode and without tokens, the master answers 503 saying
 * which secrets to set.
 *
 * Every authenticated request also counts against its credential's rate limit
 * (RATE_LIMIT_PER_MINUTE): a counter row per credential in D1, in a window that opens with the
 * first request after the previous window closed. An isolate counts in its own memory and adds
 * its count to the row once per 1/RATE_SHARES of the limit (`countRequest`), so a node polling
 * a few times a minute writes nothing, while one isolate still refuses exactly the request past
 * the limit and all isolates together at most RATE_SHARES shares more.
 */
import type { Context, MiddlewareHandler } from 'hono';
import { matchedRoutes } from 'hono/route';
import type { AppEnv } from './app-env.ts';
import { countRequests, holdsTaskRendering, workerWithCredential } from './db/workers.ts';
import type { FarmConfig } from './env.ts';
import { fail } from './errors.ts';

/** What a route requires. */
export type Access = 'public' | 'submitter' | 'node' | 'enrol' | 'node-or-submitter';

/** Who sent a request, once the middleware has checked the credential. */
export type Principal = { kind: 'anonymous' } | { kind: 'public' } | { kind: 'submitter' } | { kind: 'enrolment' } | { kind: 'node'; workerId: string };

/**
 * Routes (method and path as registered) that do not take a submitter token. A route missing
 * from this table needs a submitter token, so a new route is closed until someone opens it here.
 * Pages that only serve static, data-free content (an OpenAPI document) may be made public;
 * anything that returns jobs, frames, logs or nodes may not. The dashboard's files are static
 * assets that never reach the Worker (wrangler.toml [assets]).
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
  // The API description holds no data (see routes/docs.ts).
  'GET /openapi.json': 'public',
  'GET /docs': 'public',
  // The Blender add-on: the same code for everyone, no data.
  'GET /addon.zip': 'public',
  // Nodes fetch the blend of a task they hold; submitters may fetch any blend they sent.
  'GET /download_blend/:name': 'node-or-submitter',
  // ...and the files of a project manifest the same way (routes/manifests.ts).
  'GET /manifests/:sha256/files/:blob': 'node-or-submitter',
};

/** The access rule of a registered route. */
export function routeAccess(method: string, path: string): Access {
  return ROUTE_ACCESS[`${method.toUpperCase()} ${path}`] ?? 'submitter';
}

/** Node credentials start with this, so the master looks only those up in D1. */
const NODE_CREDENTIAL_PREFIX = 'farm_node_';

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
  'set them as Worker secrets (npx wrangler secret put FARM_SUBMIT_TOKEN, and FARM_NODE_TOKEN likewise); ' +
  'FARM_ALLOW_ANONYMOUS=true runs the master open, for local development only';

/**
 * Whether a Host value (a name or address, with or without a port) names this machine only.
 * Anything else, an unparsable value included, is not loopback.
 */
function isLoopbackHost(host: string): boolean {
  let name = host.trim().toLowerCase();
  if (name.startsWith('[')) {
    const end = name.indexOf(']');
    if (end < 0 || !/^(:\d*)?$/.test(name.slice(end + 1))) return false;
    name = name.slice(1, end);
    return name === '::1';
  }
  name = name.replace(/:\d*$/, '').replace(/\.$/, '');
  // RFC 6761: localhost and every name under it resolve to loopback; 127.0.0.0/8 is loopback.
  return name === 'localhost' || name.endsWith('.localhost') || /^127(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/.test(name);
}

/**
 * Anonymous mode serves this machine only: refuses a request addressed to any other name, as
 * the Host header says (and the URL, which workerd builds from it).
 */
function assertLoopbackRequest(c: Context<AppEnv>): void {
  const url = new URL(c.req.url);
  const header = c.req.header('host');
  for (const host of header === undefined ? [url.host] : [header, url.host]) {
    if (isLoopbackHost(host)) continue;
    fail(
      403,
      `this master runs open (FARM_ALLOW_ANONYMOUS=true, local development), so it serves only this machine and refuses requests for host ${JSON.stringify(host)}: ` +
        'from another machine, or from a web page that points its own domain at this one (DNS rebinding), anyone could use it. ' +
        `On this machine open http://localhost:${url.port || '8000'}; to serve the studio's network with tokens, run npm start -- --lan (docs/operations.md, Closed by default)`,
    );
  }
}

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

/**
 * How many shares of the limit an isolate may count in memory before it writes: each write adds
 * one share. An idle node (3 polls a minute) never fills one of the default limit's (600 / 16).
 */
const RATE_SHARES = 16;
/** Keys whose windows an isolate remembers at most, so that memory stays bounded. */
const MAX_LOCAL_KEYS = 10_000;

/** This isolate's view of each key's window: the total last read from D1 plus what it has not written yet. */
const localCounts = new Map<string, Counted & { unwritten: number }>();

/** Counts one request against `key`'s window; the D1 row is written once per share (see RATE_SHARES). */
async function countRequest(db: D1Database, key: string, now: number, limit: number): Promise<Counted> {
  let local = localCounts.get(key);
  if (!local || local.window_start <= now - RATE_WINDOW_MS) {
    if (localCounts.size >= MAX_LOCAL_KEYS) localCounts.clear();
    local = { window_start: now, count: 0, unwritten: 0 };
    localCounts.set(key, local);
  }
  local.count++;
  local.unwritten++;
  if (local.unwritten >= Math.ceil(limit / RATE_SHARES)) {
    const row = await countRequests(db, key, local.unwritten, now, RATE_WINDOW_MS);
    Object.assign(local, row, { unwritten: 0 });
  }
  return { count: local.count, window_start: local.window_start };
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
    if (limited) counted = await countRequest(c.env.DB, `s:${rateKey}`, now, config.rateLimitPerMinute);
  } else if (await matchesAny(presented, config.nodeToken === null ? [] : [config.nodeToken])) {
    principal = { kind: 'enrolment' };
    if (access !== 'enrol') {
      fail(403, `the enrolment token only registers nodes (POST /register_worker): this endpoint takes ${WHAT_TO_SEND[access]}`);
    }
    if (limited) counted = await countRequest(c.env.DB, `e:${rateKey}`, now, config.rateLimitPerMinute);
  } else if (token.startsWith(NODE_CREDENTIAL_PREFIX)) {
    const workerId = await workerWithCredential(c.env.DB, toHex(presented));
    if (!workerId) {
      unauthorized(access, 'this node credential is not known to the master (it was revoked, or the database was reset); enrol again with the enrolment token');
    }
    principal = { kind: 'node', workerId };
    if (access === 'submitter') fail(403, `a node credential cannot be used here: this endpoint takes ${WHAT_TO_SEND.submitter}`);
    if (limited) counted = await countRequest(c.env.DB, `n:${workerId}`, now, config.rateLimitPerMinute);
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
    assertLoopbackRequest(c);
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
  if (!(await holdsTaskRendering(c.env.DB, principal.workerId, blendFile))) {
    fail(403, `worker ${principal.workerId} holds no task of a job that renders ${blendFile}: a node may download only the input of a task it was given`);
  }
}
