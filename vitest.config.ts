import { defineConfig } from 'vitest/config';

// Tests import workspace packages from their TypeScript sources (the `tidings-source` export
// condition), so a test run never depends on a stale build.
const shared = {
  resolve: { conditions: ['tidings-source'] },
  ssr: { resolve: { conditions: ['tidings-source'] } },
};

export default defineConfig({
  ...shared,
  test: {
    testTimeout: 60_000,
    hookTimeout: 180_000,
    projects: [
      {
        ...shared,
        test: {
          name: 'outbox',
          include: ['packages/outbox/test/**/*.test.ts'],
          globalSetup: ['test/support/services-postgres.ts'],
        },
      },
      {
        ...shared,
        test: {
          name: 'inbox',
          include: ['packages/inbox/test/**/*.test.ts'],
          globalSetup: ['test/support/services-postgres.ts'],
        },
      },
      {
        ...shared,
        test: {
          name: 'relays',
          include: ['packages/relays/test/**/*.test.ts'],
          globalSetup: ['test/support/services-postgres.ts', 'test/support/services-brokers.ts'],
        },
      },
      {
        ...shared,
        test: {
          name: 'property',
          include: ['test/property/**/*.test.ts'],
          globalSetup: ['test/support/services-postgres.ts', 'test/support/services-brokers.ts'],
        },
      },
    ],
  },
});
