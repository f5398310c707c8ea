import { LeaseLostError } from '../errors.ts';
import { payloadJson, type OutboxEvent, type Position } from '../event.ts';
import type { Executor } from '../executor.ts';
import { quoteIdent } from '../sql.ts';
import type { SharedHeartbeats } from './shared-heartbeats.ts';

/** A partition this worker holds: its fence number guards every write it makes. */
export interface Lease {
  readonly partition: number;
  readonly fence: string;
  readonly cursor: Position;
}

export interface AttemptError {
  readonly attempt: number;
  readonly at: string;
  readonly message: string;
}

/**
 * The relay's statements on its own tables. Time always comes from PostgreSQL's clock, so workers
 * on machines with skewed clocks agree on when a lease ends.
 */
export class RelayStore {
  readonly #db: Executor;
  readonly #s: string;
  readonly relay: string;
  readonly worker: string;
  /** Sends this relay's heartbeats and renewals together with other relays' ones, when given. */
  readonly #shared: SharedHeartbeats | undefined;

  constructor(db: Executor, schema: string, relay: string, worker: string, shared?: SharedHeartbeats) {
    this.#db = db;
    this.#shared = shared;
    this.#s = quoteIdent(schema);
    this.relay = relay;
    this.worker = worker;
  }

  /** Creates the relay's cursor rows if it is new; returns the partition count. */
  async register(startFrom: 'beginning' | 'now'): Promise<number> {
    const { rows } = await this.#db.query<{ partitions: number }>(
      `WITH ins AS (${relayRegistrationSql(this.#s, '$1', '$2')})
       SELECT (SELECT st.partitions FROM ${this.#s}.settings st) AS partitions`,
      [this.relay, startFrom === 'now'],
    );
    return rows[0]!.partitions;
  }

  /** Records this worker as alive and returns how many workers (itself included) are alive. */
  async heartbeat(ttlMs: number): Promise<number> {
    if (this.#shared) return this.#shared.heartbeat(this.relay, this.worker, ttlMs);
    const { rows } = await this.#db.query<{ others: number }>(
      `WITH me AS (
         INSERT INTO ${this.#s}.relay_workers (relay, worker, expires_at)
         VALUES ($1, $2, now() + $3 * interval '1 millisecond')
         ON CONFLICT (relay, worker) DO UPDATE SET expires_at = EXCLUDED.expires_at
       ), gone AS (
         DELETE FROM ${this.#s}.relay_workers WHERE relay = $1 AND worker <> $2 AND expires_at < now()
       )
       SELECT count(*)::int AS others FROM ${this.#s}.relay_workers
       WHERE relay = $1 AND worker <> $2 AND expires_at >= now()`,
      [this.relay, this.worker, ttlMs],
    );
    return rows[0]!.others + 1;
  }

  /** Takes up to `count` partitions that nobody holds or whose lease ran out. */
  async acquire(count: number, ttlMs: number): Promise<Lease[]> {
    const { rows } = await this.#db.query<{ partition: number; fence: string; cursor_seq: string; cursor_id: string }>(
      `UPDATE ${this.#s}.relay_partitions rp
       SET owner = $2, fence = rp.fence + 1, lease_until = now() + $4 * interval '1 millisecond', updated_at = now(),
           unavailable_since = NULL, unavailable_error = NULL
       FROM (
         SELECT partition FROM ${this.#s}.relay_partitions
         WHERE relay = $1 AND (owner IS NULL OR lease_until < now())
         ORDER BY partition LIMIT $3
         FOR UPDATE SKIP LOCKED
       ) free
       WHERE rp.relay = $1 AND rp.partition = free.partition
       RETURNING rp.partition, rp.fence::text AS fence, rp.cursor_seq::text AS cursor_seq, rp.cursor_id::text AS cursor_id`,
      [this.relay, this.worker, count, ttlMs],
    );
    return rows.map((row) => ({ partition: row.partition, fence: row.fence, cursor: { seq: row.cursor_seq, id: row.cursor_id } }));
  }

  /** Extends the leases still held; returns the partitions that were kept. */
  async renew(leases: readonly Lease[], ttlMs: number): Promise<Set<number>> {
    if (leases.length === 0) return new Set();
    if (this.#shared) return this.#shared.renew(this.relay, this.worker, leases, ttlMs);
    const { rows } = await this.#db.query<{ partition: number }>(
      `UPDATE ${this.#s}.relay_partitions
       SET lease_until = now() + $3 * interval '1 millisecond'
       WHERE relay = $1 AND owner = $2
         AND (partition, fence) IN (SELECT * FROM unnest($4::smallint[], $5::bigint[]))
       RETURNING partition`,
      [this.relay, this.worker, ttlMs, leases.map((l) => l.partition), leases.map((l) => l.fence)],
    );
    return new Set(rows.map((row) => row.partition));
  }

  /**
   * Moves the cursor, only while this worker still holds the lease with this fence. The commit does
   * not wait for the WAL flush: a cursor move lost in a database crash only means those events are
   * delivered again, which at-least-once allows, and it spares every batch a disk flush.
   */
  async advance(lease: Lease, to: Position): Promise<void> {
    const { rowCount } = await this.#db.query(
      `WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
       UPDATE ${this.#s}.relay_partitions
       SET cursor_seq = $5, cursor_id = $6, updated_at = now()
       FROM relaxed
       WHERE relay = $1 AND partition = $2 AND owner = $3 AND fence = $4`,
      [this.relay, lease.partition, this.worker, lease.fence, to.seq, to.id],
    );
    if (rowCount === 0) throw new LeaseLostError(this.relay, lease.partition);
  }

  /**
   * Records a dead letter and moves the cursor past it, in one fenced statement; with `park`, also
   * parks the event's key (a keyless event parks nothing), so the key's later events wait behind it.
   */
  async deadLetter(lease: Lease, event: OutboxEvent, errors: readonly AttemptError[], park: boolean): Promise<void> {
    const { rows } = await this.#db.query<{ moved: number }>(
      `WITH moved AS (
         UPDATE ${this.#s}.relay_partitions
         SET cursor_seq = $5, cursor_id = $6, updated_at = now()
         WHERE relay = $1 AND partition = $2 AND owner = $3 AND fence = $4
         RETURNING 1
       ), letter AS (
         INSERT INTO ${this.#s}.dead_letters
           (relay, partition, event_id, topic, key, payload, headers, tenant, event_created_at, errors)
         SELECT $1, $2, $7, $8, $9, $10::json, $11::json, $12, $13, $14::jsonb FROM moved
         ON CONFLICT (relay, event_id) DO UPDATE
           SET errors = ${this.#s}.dead_letters.errors || EXCLUDED.errors, status = 'dead',
               claimed_by = NULL, claimed_until = NULL, dead_at = now()
       ), parked AS (
         INSERT INTO ${this.#s}.parked_keys (relay, partition, key, event_id)
         SELECT $1, $2, $9, $7 FROM moved WHERE $15::boolean AND $9::text IS NOT NULL
         ON CONFLICT (relay, key) DO NOTHING
       )
       SELECT count(*)::int AS moved FROM moved`,
      [
        this.relay,
        lease.partition,
        this.worker,
        lease.fence,
        event.position.seq,
        event.position.id,
        event.eventId,
        event.topic,
        event.key,
        payloadJson(event),
        JSON.stringify(event.headers),
        event.tenant,
        event.createdAt,
        JSON.stringify(errors),
        park,
      ],
    );
    if (rows[0]?.moved !== 1) throw new LeaseLostError(this.relay, lease.partition);
  }

  /**
   * Records that the partition waits for an unavailable destination since `since` (or, with
   * `undefined`, that it answers again). Fenced; a lost lease is not an error here.
   */
  async markUnavailable(lease: Lease, outage: { since: Date; error: string } | undefined): Promise<void> {
    await this.#db.query(
      `UPDATE ${this.#s}.relay_partitions SET unavailable_since = $5, unavailable_error = $6
       WHERE relay = $1 AND partition = $2 AND owner = $3 AND fence = $4`,
      [this.relay, lease.partition, this.worker, lease.fence, outage?.since ?? null, outage?.error.slice(0, 500) ?? null],
    );
  }

  /** Gives a partition back at once (graceful stop, rebalancing) so another worker need not wait. */
  async release(lease: Lease): Promise<void> {
    await this.#db.query(
      `UPDATE ${this.#s}.relay_partitions SET owner = NULL, lease_until = NULL, unavailable_since = NULL, unavailable_error = NULL
       WHERE relay = $1 AND partition = $2 AND owner = $3 AND fence = $4`,
      [this.relay, lease.partition, this.worker, lease.fence],
    );
  }

  async deregister(): Promise<void> {
    await this.#db.query(`DELETE FROM ${this.#s}.relay_workers WHERE relay = $1 AND worker = $2`, [this.relay, this.worker]);
  }
}

/**
 * The statement that registers a relay (`relay`, an SQL expression) with a cursor row per
 * partition, unless it has them: at the start of the log, or, when `fromNow` (an SQL boolean) is
 * true, after the last commit of each partition, so that what commits later is delivered. A
 * statement of its own or a CTE: the webhook registry runs it in the transaction that creates an
 * endpoint.
 *
 * The settings row is read by a scalar subquery, never joined: the table is never analysed, so the
 * planner takes it for about a thousand rows, and a join with the partitions' series costed the
 * statement past `jit_above_cost`: every registration (every webhook endpoint created) paid a JIT
 * compilation of some hundred milliseconds.
 */
export function relayRegistrationSql(s: string, relay: string, fromNow: string): string {
  return `INSERT INTO ${s}.relay_partitions (relay, partition, cursor_seq)
         SELECT ${relay}, p, CASE WHEN ${fromNow} THEN coalesce((SELECT max(c.seq) + 1 FROM ${s}.commits c WHERE c.partition = p), 0) ELSE 0 END
         FROM generate_series(0, (SELECT st.partitions FROM ${s}.settings st) - 1) AS p
         ON CONFLICT (relay, partition) DO NOTHING`;
}
