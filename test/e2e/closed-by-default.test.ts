/**
 * Closed by default: nothing in wrangler.toml can make a deployed master run open, and
 * `npm start -- --lan` (the real scripts/start-local.mjs: wrangler dev on 0.0.0.0 and a render
 * node) serves the network with tokens it made once, printed, and kept across a restart.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { experimental_readRawConfig } from 'wrangler';
import { ROOT, freePort, killGroup, tempDir, waitFor } from './harness.ts';

/** Where a wrangler config sets FARM_ALLOW_ANONYMOUS, read with wrangler's own parser: top-level vars and every [env.*]. */
function anonymousSettings(configPath: string): string[] {
  const { rawConfig } = experimental_readRawConfig({ config: configPath });
  const places: [string, Record<string, unknown> | undefined][] = [
    ['vars', rawConfig.vars as Record<string, unknown> | undefined],
    ...Object.entries(rawConfig.env ?? {}).map(([name, section]): [string, Record<string, unknown> | undefined] => [
      `env.${name}.vars`,
      (section as { vars?: Record<string, unknown> }).vars,
    ]),
  ];
  return places.filter(([, vars]) => vars !== undefined && 'FARM_ALLOW_ANONYMOUS' in vars).map(([place]) => place);
}

describe('wrangler.toml', () => {
  it('sets FARM_ALLOW_ANONYMOUS nowhere: a plain wrangler deploy ships a closed master', () => {
    expect(anonymousSettings(join(ROOT, 'wrangler.toml'))).toEqual([]);
    expect(experimental_readRawConfig({ config: join(ROOT, 'wrangler.toml') }).rawConfig.env).toBeUndefined();
  });

  it('the check finds the setting in top-level vars and in an env section', () => {
    const bad = join(tempDir('toml'), 'wrangler.toml');
    writeFileSync(bad, 'name = "x"\nmain = "w.js"\n[vars]\nFARM_ALLOW_ANONYMOUS = "false"\n[env.staging.vars]\nFARM_ALLOW_ANONYMOUS = "true"\n');
    expect(anonymousSettings(bad)).toEqual(['vars', 'env.staging.vars']);
  });
});

describe('npm start -- --lan', () => {
  const port = freePort();
  const persistDir = tempDir('lan-state');
  const farmDir = tempDir('lan-farm');
  let running: ChildProcess | undefined;

  afterAll(async () => {
    if (running) await killGroup(running, 'SIGTERM', 20_000);
  });

  /** Starts scripts/start-local.mjs --lan and returns the tokens it printed. */
  async function startLan(): Promise<{ submit: string; node: string; url: string }> {
    const child = spawn(
      process.execPath,
      [join(ROOT, 'scripts', 'start-local.mjs'), '--lan', '--port', String(await port), '--persist-to', persistDir, '--farm-dir', farmDir],
      { cwd: ROOT, env: { ...process.env, CI: 'true', NO_COLOR: '1' }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    running = child;
    let output = '';
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    const tokens = await waitFor(
      'start-local.mjs --lan to print its tokens',
      async () => {
        const submit = /submitter token: (\S+)/.exec(output)?.[1];
        const node = /node enrolment token: (\S+)/.exec(output)?.[1];
        return submit && node ? { submit, node } : null;
      },
      60_000,
    ).catch((err) => {
      throw new Error(`${(err as Error).message}\n${output}`);
    });
    return { ...tokens, url: `http://127.0.0.1:${await port}` };
  }

  it('refuses a request without a token (401), accepts the printed token from any host, enrols its node, and keeps the tokens across a restart', async () => {
    const migrate = spawnSync(
      process.execPath,
      [join(ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js'), 'd1', 'migrations', 'apply', 'DB', '--local', '--persist-to', persistDir],
      {
        cwd: ROOT,
        env: { ...process.env, CI: 'true', CLOUDFLARE_CF_FETCH_ENABLED: 'false', WRANGLER_SEND_METRICS: 'false' },
        encoding: 'utf8',
      },
    );
    expect(migrate.status, migrate.stderr).toBe(0);

    const first = await startLan();
    expect(first.submit).toMatch(/^farm_submit_[\w-]{43}$/);
    expect(first.node).toMatch(/^farm_enrol_[\w-]{43}$/);
    const kept = readFileSync(join(farmDir, 'lan-tokens.env'), 'utf8');
    expect(kept).toContain(`FARM_SUBMIT_TOKEN=${first.submit}`);
    expect(statSync(join(farmDir, 'lan-tokens.env')).mode & 0o077).toBe(0);

    const noToken = await fetch(`${first.url}/jobs`);
    expect(noToken.status).toBe(401);
    expect(((await noToken.json()) as { error: string }).error).toContain('needs a credential');
    // Closed, so not bound to loopback names: a LAN name in Host is served (an open master would answer 403).
    const lanHost = { host: `studio-master.lan:${await port}`, authorization: `Bearer ${first.submit}` };
    expect((await fetch(`${first.url}/jobs`, { headers: lanHost })).status).toBe(200);
    expect((await fetch(`${first.url}/jobs`, { headers: { authorization: 'Bearer not-the-token' } })).status).toBe(401);

    // The local render node enrolled with the node token.
    await waitFor(
      'the local render node to enrol',
      async () => {
        const res = await fetch(`${first.url}/workers`, { headers: { authorization: `Bearer ${first.submit}` } });
        const body = (await res.json()) as { workers: { name: string }[] };
        return body.workers.some((w) => w.name === 'local-1');
      },
      30_000,
    );

    await killGroup(running!, 'SIGTERM', 20_000);
    const second = await startLan();
    expect({ submit: second.submit, node: second.node }).toEqual({ submit: first.submit, node: first.node });
    expect((await fetch(`${second.url}/jobs`, { headers: { authorization: `Bearer ${second.submit}` } })).status).toBe(200);
  });
});
