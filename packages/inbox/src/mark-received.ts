import { markStatement } from '#mark-statement';
import type { Executor } from '@tidings/outbox';
import { quoteIdent, translateError } from './schema.ts';

const statements = new Map<string, string>();

function insertStatement(schema: string): string {
  let text = statements.get(schema);
  if (text === undefined) {
    text = markStatement(quoteIdent(schema));
    statements.set(schema, text);
  }
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
