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
  /**
   * Events of the same key parked behind this dead letter (onFailure `park`): they are delivered
   * after it when it is retried, or released when it is discarded. 0 when it parks nothing.
   */
  readonly parkedEvents: number;
  /** True when this dead letter parks its key. */
  readonly parksKey: boolean;
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
    `SELECT d.id::text, d.relay, d.partition, d.event_id, d.topic, d.key, d.payload, d.headers, d.tenant, d.event_created_at, d.errors,
            d.status, d.dead_at, pk.key IS NOT NULL AS parks_key,
            CASE WHEN pk.key IS NULL THEN 0
                 ELSE (SELECT count(*) FROM ${s}.parked_events pe WHERE pe.relay = d.relay AND pe.key = pk.key)::int END AS parked_events
     FROM ${s}.dead_letters d
     LEFT JOIN ${s}.parked_keys pk ON pk.relay = d.relay AND pk.event_id = d.event_id
     WHERE ($1::text IS NULL OR d.relay = $1) AND ($2::bigint[] IS NULL OR d.id = ANY($2))
     ORDER BY d.id LIMIT $3`,
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
    parkedEvents: row.parked_events as number,
    parksKey: row.parks_key as boolean,
  }));
}

/** Which dead letters to retry, and the redelivery horizon they must be within. */
export interface RetryDeadLettersOptions extends DeadLetterQuery, HorizonOptions {}

/**
 * Queues dead letters for another delivery by their relay's workers; returns how many were queued.
 * One that parks its key is sent by the worker holding its partition, followed by the key's parked
 * events in order; the others are sent outside partition order, since the events behind them have
 * moved on.
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

/**
 * Deletes dead letters for good; returns how many. The events parked behind a discarded dead
 * letter are released: its relay delivers them in order and the key flows again.
 */
export async function discardDeadLetters(db: Executor, query: DeadLetterQuery = {}): Promise<number> {
  const schema = resolveSchema(query.schema);
  const { rows } = await translatingErrors(schema, () => db.query<{ discarded: number }>(
    `WITH gone AS (
       DELETE FROM ${quoteIdent(schema)}.dead_letters
       WHERE status = 'dead' AND ($1::text IS NULL OR relay = $1) AND ($2::bigint[] IS NULL OR id = ANY($2))
       RETURNING 1
     )
     SELECT count(*)::int AS discarded, pg_notify($3, '*') IS NULL AS _ FROM gone`,
    [query.relay ?? null, query.ids ?? null, notifyChannel(schema)],
  ));
  return rows[0]?.discarded ?? 0;
}

/** A key whose events wait behind a dead letter (onFailure `park`). */
export interface ParkedKeyInfo {
  readonly relay: string;
  readonly partition: number;
  readonly key: string;
  /** The event id of the dead letter the key waits behind. */
  readonly deadLetterEventId: string;
  /** Events parked behind it. */
  readonly parkedEvents: number;
  readonly parkedAt: Date;
}

/**
 * Lists parked keys with how many events wait behind each, oldest first.
 *
 * @example
 * for (const k of await listParkedKeys(db, { relay: 'orders-to-rabbit' })) console.log(k.key, k.parkedEvents);
 */
export async function listParkedKeys(db: Executor, query: { schema?: string; relay?: string; limit?: number } = {}): Promise<ParkedKeyInfo[]> {
  const schema = resolveSchema(query.schema);
  const s = quoteIdent(schema);
  const { rows } = await translatingErrors(schema, () => db.query<{ relay: string; partition: number; key: string; event_id: string; parked_events: number; parked_at: Date }>(
    `SELECT pk.relay, pk.partition, pk.key, pk.event_id, pk.parked_at,
            (SELECT count(*) FROM ${s}.parked_events pe WHERE pe.relay = pk.relay AND pe.key = pk.key)::int AS parked_events
     FROM ${s}.parked_keys pk
     WHERE $1::text IS NULL OR pk.relay = $1
     ORDER BY pk.parked_at, pk.key LIMIT $2`,
    [query.relay ?? null, query.limit ?? 1000],
  ));
  return rows.map((row) => ({
    relay: row.relay,
    partition: row.partition,
    key: row.key,
    deadLetterEventId: row.event_id,
    parkedEvents: row.parked_events,
    parkedAt: row.parked_at,
  }));
}
