import { isMutant, type Executor } from '@tidings/outbox';
import { quoteIdent, translateError } from './schema.ts';

/**
 * The `no-dedup` mutant (see `isMutant`) makes the dedup check a plain look-up, as an inbox without
 * a unique key would do, so the exactly-once tests can prove they catch it.
 */
const noUniqueKeyMutant = isMutant('no-dedup');

const statements = new Map<string, string>();

function insertStatement(schema: string): string {
  let text = statements.get(schema);
  if (text) return text;
  const s = quoteIdent(schema);
  // A second transaction inserting the same key waits on the unique index until the first one
  // ends: if it committed, nothing is inserted (duplicate); if it rolled back, the row goes in.
  text = noUniqueKeyMutant
    ? `WITH seen AS (SELECT 1 FROM ${s}.inbox WHERE consumer = $1 AND event_id = $2),
       ins AS (INSERT INTO ${s}.inbox (consumer, event_id) SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM seen)
               ON CONFLICT (consumer, event_id) DO NOTHING)
       SELECT true AS received WHERE NOT EXISTS (SELECT 1 FROM seen)`
    : `INSERT INTO ${s}.inbox (consumer, event_id) VALUES ($1, $2)
       ON CONFLICT (consumer, event_id) DO NOTHING
       RETURNING true AS received`;
  statements.set(schema, text);
  return text;
}

/**
 * Writes the dedup mark of (consumer, eventId) in the caller's transaction. True when the mark is
 * new, so the event's effects are to be applied now; false when a committed transaction (or this
 * one) already has it.
 */
export async function markReceived(executor: Executor, schema: string, consumer: string, eventId: string): Promise<boolean> {
  try {
    const { rows } = await executor.query(insertStatement(schema), [consumer, eventId]);
    return rows.length > 0;
  } catch (error) {
    throw translateError(error, schema);
  }
}
