/**
 * The master's configuration: every variable is read by one rule (protocol/settings.ts); one set
 * to something it cannot be is refused with an error naming it, never silently a default.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { app } from '../../edge/app.ts';
import { readConfig, type Env } from '../../edge/env.ts';
import { BASE, expectError } from './helpers.ts';

const withVars = (vars: Partial<Env>): Env => ({ ...env, ...vars });

describe('the master configuration', () => {
  it('reads what is set, and takes the default for what is unset or empty', () => {
    expect(readConfig(withVars({ LEASE_MS: '30000', RATE_LIMIT_PER_MINUTE: '0' }))).toMatchObject({ leaseMs: 30_000, rateLimitPerMinute: 0 });
    expect(readConfig(withVars({ LEASE_MS: '', TARGET_CHUNK_MS: undefined })).leaseMs).toBe(60_000);
    expect(readConfig(withVars({ TARGET_CHUNK_MS: undefined })).targetChunkMs).toBe(120_000);
  });

  it('a variable set to something it cannot be is an error naming it and the value', () => {
    expect(() => readConfig(withVars({ LEASE_MS: '60s' }))).toThrow('LEASE_MS must be a whole number of at least 1 (got "60s")');
    expect(() => readConfig(withVars({ LEASE_MS: '0' }))).toThrow(/LEASE_MS must be/);
    expect(() => readConfig(withVars({ DELETE_PAGE_SIZE: '5000' }))).toThrow('DELETE_PAGE_SIZE must be a whole number from 1 to 1000 (got "5000")');
    expect(() => readConfig(withVars({ BLOB_PART_BYTES: '1024' }))).toThrow(/BLOB_PART_BYTES must be a whole number of at least 5242880/);
  });

  it('every request answers 500 naming the bad variable, public routes too', async () => {
    const bad = withVars({ LEASE_MS: '60s' });
    for (const path of ['/time', '/jobs']) {
      const response = await app.fetch(new Request(`${BASE}${path}`), bad);
      await expectError(response, 500, `the master's configuration is wrong: LEASE_MS must be a whole number of at least 1 (got "60s")`);
    }
    expect((await app.fetch(new Request(`${BASE}/time`), env)).status).toBe(200);
  });
});
