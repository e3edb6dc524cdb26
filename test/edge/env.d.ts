/**
 * Types of the bindings the edge tests see: the master's own (wrangler.toml) plus the
 * migrations that vitest.config.ts passes in, and the main module so that
 * `exports.default.fetch` from `cloudflare:workers` is typed.
 */
type FarmEnv = import('../../edge/env.ts').Env;

declare namespace Cloudflare {
  interface Env extends FarmEnv {
    TEST_MIGRATIONS: import('cloudflare:test').D1Migration[];
  }
  interface GlobalProps {
    mainModule: typeof import('../../edge/index.ts');
  }
}
