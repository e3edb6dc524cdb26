/**
 * Every route of the app needs the right credential. The routes are read from the app itself
 * (`app.routes`), so a route added later is covered without anyone remembering to list it: it
 * must answer 401 without a token unless it is on the short public list in route-list.ts.
 */
import { describe, expect, it } from 'vitest';
import { routeAccess, ROUTE_ACCESS } from '../../edge/auth.ts';
import { countRows, expectError, sharedFarm } from '../edge/helpers.ts';
import { enrol, ENROL_TOKEN, send, SUBMIT_TOKEN } from './auth-helpers.ts';
import { appRoutes, concretePath, plausibleInit, PUBLIC_ROUTES } from './route-list.ts';

// Refusals that change nothing: one farm serves them all.
sharedFarm();

const routes = appRoutes();
const protectedRoutes = routes.filter((r) => !PUBLIC_ROUTES.has(r.key));

describe('the route list the sweep uses', () => {
  it('comes from the app and holds every endpoint of the seed API and the node protocol', () => {
    const keys = routes.map((r) => r.key);
    for (const known of [
      'GET /time',
      'POST /submit_job',
      'GET /job_status/:job_id',
      'POST /register_worker',
      'POST /get_job',
      'GET /download_blend/:name',
      'POST /update_task_status',
      'POST /upload_result',
      'PUT /tasks/:task_id/frames/:frame',
      'PUT /tasks/:task_id/log',
      'GET /jobs',
      'GET /jobs/:job_id/frames.zip',
      'POST /jobs/:job_id/requeue_failed',
    ]) {
      expect(keys).toContain(known);
    }
  });

  it('the master opens exactly the public routes listed here, and its access table names only real routes', () => {
    const open = routes.filter((r) => routeAccess(r.method, r.path) === 'public').map((r) => r.key);
    expect(open.sort()).toEqual([...PUBLIC_ROUTES].sort());
    const keys = new Set(routes.map((r) => r.key));
    for (const entry of Object.keys(ROUTE_ACCESS)) expect(keys, `ROUTE_ACCESS has "${entry}", which is no route`).toContain(entry);
  });
});

describe('without a valid credential', () => {
  it.each(protectedRoutes.map((r) => [r.key, r]))(
    '%s answers 401 without a token, with a wrong token and with a made-up node credential, and changes nothing',
    async (_key, route) => {
      const path = concretePath(route.path);
      const before = await countRows();
      for (const token of [undefined, 'not-a-token', `${SUBMIT_TOKEN}x`, 'farm_node_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA']) {
        const res = await send(path, plausibleInit(route.method), token);
        expect(res.headers.get('www-authenticate'), `${route.key} with ${token ?? 'no token'}`).toBe('Bearer realm="farm"');
        await expectError(res, 401, 'Authorization: Bearer');
      }
      expect(await countRows()).toEqual(before);
    },
  );

  it('a malformed Authorization header (Basic, or Bearer without a token) is a 401 too', async () => {
    await expectError(await send('/jobs', { headers: { authorization: 'Basic dXNlcjpwYXNz' } }), 401, 'must be "Bearer <token>"');
    await expectError(await send('/jobs', { headers: { authorization: 'Bearer ' } }), 401, 'must be "Bearer <token>"');
  });

  it('an unknown path is a 401 too: only a caller with a token learns which paths exist', async () => {
    await expectError(await send('/admin'), 401, 'needs a credential');
    await expectError(await send('/admin', {}, SUBMIT_TOKEN), 404, 'no such endpoint');
  });

  it.each([...PUBLIC_ROUTES])('%s needs no token', async (key) => {
    const [method, pattern] = key.split(' ') as [string, string];
    expect((await send(concretePath(pattern), { method })).status).toBe(200);
  });
});

describe('a valid credential of the wrong kind', () => {
  const byAccess = (access: string) => protectedRoutes.filter((r) => routeAccess(r.method, r.path) === access);

  it.each(byAccess('node').map((r) => [r.key, r]))('%s (a node route) refuses submitter tokens and the enrolment token with 403', async (_key, route) => {
    const path = concretePath(route.path);
    await expectError(await send(path, plausibleInit(route.method), SUBMIT_TOKEN), 403, 'a submitter token cannot be used here');
    await expectError(await send(path, plausibleInit(route.method), ENROL_TOKEN), 403, 'the enrolment token only registers nodes');
  });

  it.each(byAccess('submitter').map((r) => [r.key, r]))(
    '%s (a submitter route) refuses node credentials and the enrolment token with 403',
    async (_key, route) => {
      const node = await enrol('wrong-kind');
      const path = concretePath(route.path);
      const before = await countRows();
      await expectError(await send(path, plausibleInit(route.method), node.credential), 403, 'a node credential cannot be used here');
      await expectError(await send(path, plausibleInit(route.method), ENROL_TOKEN), 403, 'the enrolment token only registers nodes');
      expect(await countRows()).toEqual(before);
    },
  );

  it('POST /register_worker refuses a submitter token with 403', async () => {
    await expectError(await send('/register_worker', plausibleInit('POST'), SUBMIT_TOKEN), 403, 'a submitter token cannot be used here');
  });
});
