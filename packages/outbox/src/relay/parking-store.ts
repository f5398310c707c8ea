import { LeaseLostError } from '../errors.ts';
import { payloadJson, withJsonPayload, type OutboxEvent, type Position } from '../event.ts';
import type { Executor } from '../executor.ts';
import { decodePosition, encodePosition, start } from '../position.ts';
import { quoteIdent } from '../sql.ts';
import type { AttemptError, Lease } from './store.ts';

/** A parked key of one partition and the dead letter (by event id) it waits behind. */
export interface ParkedKey {
  readonly key: string;
  readonly eventId: string;
}

/** A parked key whose dead letter an operator retried or discarded: its events may go now. */
export interface ParkedKeyToResolve extends ParkedKey {
  /** The dead letter to send first (retried), or undefined when it was discarded. */
  readonly letter: OutboxEvent | undefined;
  /** Attempts recorded on the dead letter so far. */
  readonly attempts: number;
}

/** An event set aside behind a parked key. */
export interface ParkedEvent {
  readonly seq: string;
  readonly event: OutboxEvent;
}

interface EventColumns {
  event_id: string;
  topic: string;
  key: string | null;
  partition: number;
  payload: string;
  headers: Record<string, string>;
  tenant: string | null;
  event_created_at: Date;
}

/**
 * The relay's statements on parked keys. Every write is fenced by the partition's lease, like a
 * cursor move: only the worker holding the partition parks and releases its keys, one step at a
 * time, so a key's events can never be released twice or overtake each other.
 */
export class ParkingStore {
  readonly #db: Executor;
  readonly #s: string;
  readonly relay: string;
  readonly worker: string;

  constructor(db: Executor, schema: string, relay: string, worker: string) {
    this.#db = db;
    this.#s = quoteIdent(schema);
    this.relay = relay;
    this.worker = worker;
  }

  /** The partition's parked keys. */
  async parkedKeys(lease: Lease): Promise<ParkedKey[]> {
    const { rows } = await this.#db.query<{ key: string; event_id: string }>(
      `SELECT key, event_id FROM ${this.#s}.parked_keys WHERE relay = $1 AND partition = $2`,
      [this.relay, lease.partition],
    );
    return rows.map((row) => ({ key: row.key, eventId: row.event_id }));
  }

  /** Sets events of parked keys aside (in the order given); an event parked before stays where it was. */
  async park(lease: Lease, events: readonly OutboxEvent[]): Promise<void> {
    if (events.length === 0) return;
    await this.#fenced(
      lease,
      `op AS (
       INSERT INTO ${this.#s}.parked_events (relay, partition, key, event_id, topic, payload, headers, tenant, event_created_at, position)
       SELECT $1, $2, e.key, e.event_id, e.topic, e.payload::json, e.headers::json, e.tenant, e.created_at, e.position
       FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[], $12::text[])
              WITH ORDINALITY AS e(key, event_id, topic, payload, headers, tenant, created_at, position, n)
       WHERE EXISTS (SELECT 1 FROM held)
       ORDER BY e.n
       ON CONFLICT (relay, event_id) DO NOTHING
       RETURNING 1)`,
      [
        events.map((e) => e.key),
        events.map((e) => e.eventId),
        events.map((e) => e.topic),
        events.map((e) => payloadJson(e)),
        events.map((e) => JSON.stringify(e.headers)),
        events.map((e) => e.tenant),
        events.map((e) => e.createdAt),
        events.map((e) => encodePosition(e.position)),
      ],
    );
  }

  /** Parked keys whose dead letter is queued for a retry or was discarded. */
  async toResolve(lease: Lease): Promise<ParkedKeyToResolve[]> {
    const { rows } = await this.#db.query<{ key: string; event_id: string; found: boolean; attempts: number | null } & EventColumns>(
      `SELECT pk.key, pk.event_id, d.id IS NOT NULL AS found, jsonb_array_length(d.errors) AS attempts,
              d.topic, d.partition, d.payload::text AS payload, d.headers, d.tenant, d.event_created_at
       FROM ${this.#s}.parked_keys pk
       LEFT JOIN ${this.#s}.dead_letters d ON d.relay = pk.relay AND d.event_id = pk.event_id
       WHERE pk.relay = $1 AND pk.partition = $2 AND (d.id IS NULL OR d.status <> 'dead')
       ORDER BY pk.parked_at`,
      [this.relay, lease.partition],
    );
    return rows.map((row) => ({
      key: row.key,
      eventId: row.event_id,
      letter: row.found ? toEvent(row, start) : undefined,
      attempts: row.attempts ?? 0,
    }));
  }

  /** The oldest events parked behind `key`. */
  async parkedEvents(lease: Lease, key: string, limit: number): Promise<ParkedEvent[]> {
    const { rows } = await this.#db.query<{ seq: string; position: string } & EventColumns>(
      `SELECT seq::text AS seq, key, event_id, topic, partition, payload::text AS payload, headers, tenant, event_created_at, position
       FROM ${this.#s}.parked_events pe WHERE relay = $1 AND key = $2 ORDER BY pe.seq LIMIT $3`,
      [this.relay, key, limit],
    );
    return rows.map((row) => ({ seq: row.seq, event: toEvent(row, decodePosition(row.position)) }));
  }

  /** Forgets what was delivered: the retried dead letter and/or parked events. */
  async delivered(lease: Lease, letterEventId: string | undefined, seqs: readonly string[]): Promise<void> {
    await this.#fenced(
      lease,
      `letter AS (DELETE FROM ${this.#s}.dead_letters WHERE relay = $1 AND event_id = $5 AND EXISTS (SELECT 1 FROM held)),
       op AS (DELETE FROM ${this.#s}.parked_events WHERE relay = $1 AND seq = ANY($6::bigint[]) AND EXISTS (SELECT 1 FROM held) RETURNING 1)`,
      [letterEventId ?? null, seqs],
    );
  }

  /** A retried dead letter was refused again: it is dead once more, and its key stays parked. */
  async deadAgain(lease: Lease, letterEventId: string, errors: readonly AttemptError[]): Promise<void> {
    await this.#fenced(
      lease,
      `op AS (
         UPDATE ${this.#s}.dead_letters SET status = 'dead', claimed_by = NULL, claimed_until = NULL, dead_at = now(), errors = errors || $6::jsonb
         WHERE relay = $1 AND event_id = $5 AND EXISTS (SELECT 1 FROM held) RETURNING 1)`,
      [letterEventId, JSON.stringify(errors)],
    );
  }

  /** A parked event became a dead letter: the key now waits behind it, with the rest still parked. */
  async parkedEventDead(lease: Lease, parked: ParkedEvent, errors: readonly AttemptError[]): Promise<void> {
    await this.#fenced(
      lease,
      `moved AS (
         DELETE FROM ${this.#s}.parked_events WHERE relay = $1 AND seq = $5 AND EXISTS (SELECT 1 FROM held)
         RETURNING partition, event_id, topic, key, payload, headers, tenant, event_created_at
       ), letter AS (
         INSERT INTO ${this.#s}.dead_letters (relay, partition, event_id, topic, key, payload, headers, tenant, event_created_at, errors)
         SELECT $1, partition, event_id, topic, key, payload, headers, tenant, event_created_at, $6::jsonb FROM moved
         ON CONFLICT (relay, event_id) DO UPDATE
           SET errors = ${this.#s}.dead_letters.errors || EXCLUDED.errors, status = 'dead', claimed_by = NULL, claimed_until = NULL, dead_at = now()
       ),
       op AS (UPDATE ${this.#s}.parked_keys pk SET event_id = moved.event_id, parked_at = now() FROM moved WHERE pk.relay = $1 AND pk.key = moved.key RETURNING 1)`,
      [parked.seq, JSON.stringify(errors)],
    );
  }

  /** Ends the parking of `key` once nothing is parked behind it any more; returns whether it ended. */
  async release(lease: Lease, key: string): Promise<boolean> {
    const rows = await this.#fenced(
      lease,
      `op AS (
         DELETE FROM ${this.#s}.parked_keys WHERE relay = $1 AND key = $5 AND EXISTS (SELECT 1 FROM held)
           AND NOT EXISTS (SELECT 1 FROM ${this.#s}.parked_events WHERE relay = $1 AND key = $5)
         RETURNING 1)`,
      [key],
    );
    return rows > 0;
  }

  /**
   * Runs the CTEs `ctes`, one of them named `op` with `RETURNING 1`, after a CTE `held` that is
   * non-empty while this worker holds the lease ($1-$4 = relay, partition, worker, fence; the
   * caller's parameters follow from $5). Throws LeaseLostError when the lease is gone; returns the
   * rows `op` touched.
   */
  async #fenced(lease: Lease, ctes: string, params: readonly unknown[]): Promise<number> {
    const { rows } = await this.#db.query<{ held: number; n: number }>(
      `WITH held AS (
         SELECT 1 FROM ${this.#s}.relay_partitions WHERE relay = $1 AND partition = $2 AND owner = $3 AND fence = $4 FOR SHARE
       ), ${ctes}
       SELECT (SELECT count(*) FROM held)::int AS held, (SELECT count(*) FROM op)::int AS n`,
      [this.relay, lease.partition, this.worker, lease.fence, ...params],
    );
    if (!rows[0] || rows[0].held === 0) throw new LeaseLostError(this.relay, lease.partition);
    return rows[0].n;
  }
}

function toEvent(row: EventColumns, position: Position): OutboxEvent {
  return withJsonPayload(
    {
      eventId: row.event_id,
      topic: row.topic,
      key: row.key,
      partition: row.partition,
      headers: row.headers,
      tenant: row.tenant,
      createdAt: row.event_created_at,
      position,
    },
    row.payload,
  );
}
