import { readFileSync } from 'node:fs';
import type { Plugin } from 'vite';
import { defineConfig } from 'vitest/config';
import { cloudflareTest, readD1Migrations } from '@cloudflare/vitest-plugin';

const migrations = await readD1Migrations('./edge/migrations');

/**
 * The master imports the add-on's files as text (wrangler.toml's `[[rules]] type = "Text"`);
 * tests that import the app in plain Node (the route list of test/e2e/security.test.ts) get the
 * same through this plugin.
 */
const textModules: Plugin = {
  name: 'farm-text-modules',
  enforce: 'pre',
  load(id) {
    if (/\.(py|toml)$/.test(id)) return `export default ${JSON.stringify(readFileSync(id, 'utf8'))};`;
  },
};

export default defineConfig({
  test: {
    projects: [
      {
        // The master, inside workerd with real D1 and R2 bindings and the real migrations.
        plugins: [
          cloudflareTest({
            wrangler: { configPath: './wrangler.toml' },
            // Local development's open mode, which npm start passes as a --var (wrangler.toml never sets it).
            miniflare: { bindings: { TEST_MIGRATIONS: migrations, FARM_ALLOW_ANONYMOUS: 'true' } },
          }),
        ],
        test: {
          name: 'edge',
          include: ['test/edge/**/*.test.ts'],
          setupFiles: ['test/edge/setup.ts'],
        },
      },
      {
        // The same master with authentication on, as deployed, with test tokens.
        plugins: [
          cloudflareTest({
            wrangler: { configPath: './wrangler.toml' },
            miniflare: {
              bindings: {
                TEST_MIGRATIONS: migrations,
                FARM_ALLOW_ANONYMOUS: 'false',
                FARM_SUBMIT_TOKEN: 'test-submit-token-old, test-submit-token-new',
                FARM_NODE_TOKEN: 'test-node-enrolment-token',
              },
            },
          }),
        ],
        test: {
          name: 'edge-auth',
          include: ['test/edge-auth/**/*.test.ts'],
          setupFiles: ['test/edge/setup.ts'],
        },
      },
      {
        // The render node's logic, the CLI, the scripts and the master's runtime-free modules, in plain Node.
        test: {
          name: 'node',
          environment: 'node',
          include: ['test/worker-node/**/*.test.ts', 'test/cli/**/*.test.ts', 'test/edge-node/**/*.test.ts'],
          setupFiles: ['test/remove-temp-dirs.ts'],
          testTimeout: 60_000,
        },
      },
      {
        // Real master (wrangler dev) + real render nodes + real Blender.
        plugins: [textModules],
        test: {
          name: 'e2e',
          environment: 'node',
          include: ['test/e2e/**/*.test.ts'],
          setupFiles: ['test/e2e/setup.ts'],
          testTimeout: 600_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
