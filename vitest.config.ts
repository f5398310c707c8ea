import { defineConfig } from 'vitest/config';
import { sourceConditions } from './test/support/mutants.ts';

// Tests import workspace packages from their TypeScript sources (the `tidings-source` export
// condition), so a test run never depends on a stale build; TIDINGS_MUTANT adds the conditions of
// the mutants it names (test/support/mutants.ts).
const conditions = [...sourceConditions];
const shared = {
  resolve: { conditions },
  ssr: { resolve: { conditions } },
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
          name: 'orm',
          include: ['test/orm/**/*.test.ts'],
          globalSetup: ['test/support/services-postgres.ts', 'test/orm/prisma/generate.ts'],
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
