import type * as real from '../../src/mark-statement.ts';

/**
 * Mutant `no-dedup`: the dedup check is a plain look-up, as an inbox without a unique key would
 * make it, so two concurrent deliveries of one event both find no mark and both apply it.
 */
export const markStatement: typeof real.markStatement = (s) =>
  `WITH seen AS (SELECT 1 FROM ${s}.inbox WHERE consumer = $1 AND event_id = $2),
       ins AS (INSERT INTO ${s}.inbox (consumer, event_id) SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM seen)
               ON CONFLICT (consumer, event_id) DO NOTHING)
       SELECT true AS received WHERE NOT EXISTS (SELECT 1 FROM seen)`;
