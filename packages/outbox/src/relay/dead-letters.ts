import type { Json } from '../event.ts';
import type { Executor } from '../executor.ts';
import { notifyChannel, resolveSchema } from '../options.ts';
import { refuseBeyondHorizon, resolveHorizon, type HorizonOptions } from '../horizon.ts';
import { translatingErrors } from '../driver-errors.ts';
import { quoteIdent } from '../sql.ts';
import type { AttemptError } from './store.ts';

export interface DeadLetter {
  readonly id: string;
  readonly relay: string;
  readonly partition: number;
  readonly eventId: string;
  readonly topic: string;
  readonly key: string | null;
  readonly payload: Json;
  readonly headers: Readonly<Record<string, string>>;
  readonly tenant: string | null;
  readonly eventCreatedAt: Date;
  /** Every failed attempt, oldest first. */
  readonly errors: readonly AttemptError[];
  /** `dead`: waiting for an operator; `retry`/`retrying`: queued for, or in, a new delivery. */
  readonly status: 'dead' | 'retry' | 'retrying';
  readonly deadAt: Date;
}

export interface DeadLetterQuery {
  readonly schema?: string;
  /** Only this relay's dead letters. */
  readonly relay?: string;
  /** Only these dead-letter ids. */
  readonly ids?: readonly string[];
}

/**
 * Lists dead letters, oldest first.
 *
 * @example
 * for (const letter of await listDeadLetters(db, { relay: 'orders-to-rabbit' })) console.log(letter.errors.at(-1));
 */
export async function listDeadLetters(db: Executor, query: DeadLetterQuery & { limit?: number } = {}): Promise<DeadLetter[]> {
  const schema = resolveSchema(query.schema);
  const s = quoteIdent(schema);
  const { rows } = await translatingErrors(schema, () => db.query<Record<string, unknown>>(
    `SELECT id::text, relay, partition, event_id, topic, key, payload, headers, tenant, event_created_at, errors, status, dead_at
     FROM ${s}.dead_letters
     WHERE ($1::text IS NULL OR relay = $1) AND ($2::bigint[] IS NULL OR id = ANY($2))
     ORDER BY id LIMIT $3`,
    [query.relay ?? null, query.ids ?? null, query.limit ?? 1000],
  ));
  return rows.map((row) => ({
    id: row.id as string,
    relay: row.relay as string,
    partition: row.partition as number,
    eventId: row.event_id as string,
    topic: row.topic as string,
    key: row.key as string | null,
    payload: row.payload as Json,
    headers: row.headers as Record<string, string>,
    tenant: row.tenant as string | null,
    eventCreatedAt: row.event_created_at as Date,
    errors: row.errors as AttemptError[],
    status: row.status as DeadLetter['status'],
    deadAt: row.dead_at as Date,
  }));
}

/** Which dead letters to retry, and the redelivery horizon they must be within. */
export interface RetryDeadLettersOptions extends DeadLetterQuery, HorizonOptions {}

/**
 * Queues dead letters for another delivery by their relay's workers; returns how many were queued.
 * They are sent again outside partition order, since the events behind them have moved on.
 *
 * A dead letter may have been applied already (the receiver committed, then its answer was lost),
 * so retrying it relies on the consumers' inboxes: letters whose events were written before the
 * redelivery horizon (7 days by default) are refused with `BeyondHorizonError`, before anything
 * is queued, unless `beyondHorizon: true`.
 *
 * @example
 * await retryDeadLetters(db, { relay: 'orders-to-rabbit' });
 */
export async function retryDeadLetters(db: Executor, query: RetryDeadLettersOptions = {}): Promise<number> {
  const schema = resolveSchema(query.schema);
  const horizon = resolveHorizon(query);
  const s = quoteIdent(schema);
  const selected = `status = 'dead' AND ($1::text IS NULL OR relay = $1) AND ($2::bigint[] IS NULL OR id = ANY($2))`;
  const filter = [query.relay ?? null, query.ids ?? null];
  return translatingErrors(schema, async () => {
    await refuseBeyondHorizon(db, 'retrying these dead letters', horizon, {
      text: `SELECT min(event_created_at) AS oldest FROM ${s}.dead_letters WHERE ${selected}`,
      params: filter,
    });
    const { rows } = await db.query<{ queued: number }>(
      `WITH queued AS (
         UPDATE ${s}.dead_letters SET status = 'retry'
         WHERE ${selected}
           AND ($4 OR event_created_at >= now() - $5::double precision * interval '1 millisecond')
         RETURNING 1
       )
       SELECT count(*)::int AS queued, pg_notify($3, '*') IS NULL AS _ FROM queued`,
      [...filter, notifyChannel(schema), horizon.beyond, horizon.horizonMs],
    );
    return rows[0]?.queued ?? 0;
  });
}

/** Deletes dead letters for good; returns how many. */
export async function discardDeadLetters(db: Executor, query: DeadLetterQuery = {}): Promise<number> {
  const schema = resolveSchema(query.schema);
  const { rowCount } = await translatingErrors(schema, () => db.query(
    `DELETE FROM ${quoteIdent(schema)}.dead_letters
     WHERE status = 'dead' AND ($1::text IS NULL OR relay = $1) AND ($2::bigint[] IS NULL OR id = ANY($2))`,
    [query.relay ?? null, query.ids ?? null],
  ));
  return rowCount;
}
