import type * as real from '../../src/commit-check.ts';

/**
 * Mutant `commit-tag-ignored`: a COMMIT that PostgreSQL answered with ROLLBACK (a handler swallowed
 * a SQL error) counts as committed, and an aborted transaction is not noticed after a handler.
 */
export const requireCommitted: typeof real.requireCommitted = () => {};

export const requireHealthyTransaction: typeof real.requireHealthyTransaction = async () => {};
