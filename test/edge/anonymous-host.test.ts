/**
 * Anonymous mode (local development: FARM_ALLOW_ANONYMOUS=true, as this project runs the master)
 * serves only this machine: a request addressed to any other host, as a LAN client or a web page
 * using DNS rebinding would send, is refused with 403 on every route, public ones included. A
 * master with tokens serves any host. (The dashboard's files are static assets, served without
 * the Worker to any host: they hold no data, and the API they call is refused.)
 */
import { env, exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { app } from '../../edge/app.ts';
import { countRows, expectError, json } from './helpers.ts';

const send = (url: string, init?: RequestInit) => exports.default.fetch(new Request(url, init));

describe('anonymous mode serves this machine only', () => {
  it.each([
    'http://localhost/time',
    'http://localhost:8000/time',
    'http://LOCALHOST:8000/jobs',
    'http://127.0.0.1:8000/time',
    'http://127.0.0.1/jobs',
    'http://127.1.2.3:8000/time',
    'http://[::1]:8000/time',
    'http://[::1]/jobs',
    'http://farm.localhost:8000/docs',
    'http://localhost.:8000/time',
  ])('%s is served', async (url) => {
    const res = await send(url);
    expect(res.status, await res.clone().text()).toBe(200);
  });

  it.each([
    // Another machine on the LAN, with and without a port.
    'http://192.168.1.20:8000/time',
    'http://192.168.1.20/jobs',
    'http://10.0.0.5:8000/docs',
    'http://[fe80::1]:8000/time',
    'http://0.0.0.0:8000/time',
    // A web page whose domain the attacker pointed at 127.0.0.1 (DNS rebinding): its name stays in Host.
    'http://rebind.attacker.example:8000/jobs',
    'http://attacker.example/openapi.json',
    'http://localhost.attacker.example:8000/time',
    'http://127.0.0.1.nip.io:8000/addon.zip',
  ])('%s is refused with 403 and the reason', async (url) => {
    const message = await expectError(await send(url), 403, 'serves only this machine');
    expect(message).toContain('DNS rebinding');
    expect(message).toContain('npm start -- --lan');
    expect(message).toContain(new URL(url).host);
  });

  it('a Host header naming another host is refused even when the URL says localhost', async () => {
    const res = await app.fetch(new Request('http://localhost:8000/time', { headers: { host: 'rebind.attacker.example:8000' } }), env);
    await expectError(res, 403, 'rebind.attacker.example:8000');
  });

  it('a refused request changes nothing: a node cannot enrol from the LAN', async () => {
    const before = await countRows();
    const res = await send('http://192.168.1.20:8000/register_worker', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'lan-node' }),
    });
    await expectError(res, 403, 'serves only this machine');
    expect(await countRows()).toEqual(before);
  });

  it('a master with tokens serves any host: the rule is for anonymous mode only', async () => {
    const closed = { ...env, FARM_ALLOW_ANONYMOUS: 'false', FARM_SUBMIT_TOKEN: 'lan-submit-token' };
    expect((await app.fetch(new Request('http://192.168.1.20:8000/time'), closed)).status).toBe(200);
    const jobs = await app.fetch(new Request('http://192.168.1.20:8000/jobs', { headers: { authorization: 'Bearer lan-submit-token' } }), closed);
    await json(jobs, 200);
    await expectError(await app.fetch(new Request('http://192.168.1.20:8000/jobs'), closed), 401, 'needs a credential');
  });
});
