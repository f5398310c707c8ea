import { wholeOption } from '@tidings/outbox/internal';
import { ConfigError, defaultRedeliveryHorizonMs } from '@tidings/outbox';
import { toExecutor } from '@tidings/outbox/internal';
import { quoteIdent, resolveSchema, translateError } from './schema.ts';
import { validConsumer } from './validate.ts';

const day = 24 * 60 * 60 * 1000;

export interface CleanupOptions {
  /** Schema the inbox was migrated into. Default `tidings`. */
  readonly schema?: string;
  /**
   * Dedup marks younger than this are kept: the consumer's side of the redelivery horizon. Default
   * `defaultRedeliveryHorizonMs` (7 days), the horizon that `retryDeadLetters` and `replay` respect
   * on the sender's side; keep both the same. A shorter value lets a late redelivery (a broker's,
   * a webhook retry, a dead-letter retry or replay within the senders' horizon) be applied again.
   */
  readonly retentionMs?: number;
  /** Marks deleted per statement; each statement is a short transaction of its own. Default 1000. */
  readonly batchSize?: number;
  /** Only this consumer's marks. Default: every consumer's. */
  readonly consumer?: string;
  /** Stops between batches when aborted; what was deleted so far stays deleted. */
  readonly signal?: AbortSignal;
}

const cache = new Map<string, string>();

function deleteStatement(schema: string, byConsumer: boolean): string {
  const key = `${schema}:${byConsumer}`;
  let text = cache.get(key);
  if (text) return text;
  const t = `${quoteIdent(schema)}.inbox`;
  // Age is measured by the database's clock, like received_at itself. SKIP LOCKED lets several
  // cleaners run at once without waiting on each other.
  text = `WITH doomed AS (
      SELECT consumer, event_id FROM ${t}
      WHERE received_at < now() - $1::double precision * interval '1 millisecond'${byConsumer ? ' AND consumer = $3' : ''}
      LIMIT $2
      FOR UPDATE SKIP LOCKED
    )
    DELETE FROM ${t} i USING doomed d WHERE i.consumer = d.consumer AND i.event_id = d.event_id`;
  cache.set(key, text);
  return text;
}

/**
 * Deletes dedup marks older than the retention window, in small batches, and returns how many it
 * deleted. Pass a `Database` (or a pg `Pool`) so that each batch commits on its own and never holds
 * many row locks for long; run it periodically (e.g. hourly). Checkpoints are never deleted.
 *
 * @example
 * const deleted = await cleanupInbox(db, { retentionMs: 14 * 24 * 60 * 60 * 1000 });
 */
export async function cleanupInbox(db: unknown, options: CleanupOptions = {}): Promise<number> {
  const schema = resolveSchema(options.schema);
  const retentionMs = wholeOption('retentionMs', options.retentionMs, defaultRedeliveryHorizonMs, 1, 100 * 365 * day);
  const batchSize = wholeOption('batchSize', options.batchSize, 1000, 1, 100_000);
  const consumer = options.consumer === undefined ? undefined : validConsumer(options.consumer);
  const executor = toExecutor(db);
  const text = deleteStatement(schema, consumer !== undefined);
  const params: unknown[] = consumer === undefined ? [retentionMs, batchSize] : [retentionMs, batchSize, consumer];
  let total = 0;
  for (;;) {
    if (options.signal?.aborted) return total;
    let deleted: number;
    try {
      deleted = (await executor.query(text, params)).rowCount;
    } catch (error) {
      throw translateError(error, schema);
    }
    total += deleted;
    if (deleted < batchSize) return total;
  }
}
