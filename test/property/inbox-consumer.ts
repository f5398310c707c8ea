/**
 * The consumer side for destinations without a consumer helper of their own (memory, table): takes
 * messages in arrival order and applies each through the inbox — the dedup mark and the effect row
 * in one transaction. Faults: the next messages handed over twice at once (a redelivery racing the
 * first delivery), a crash after the commit but before the acknowledgement (the message comes
 * back), and handler runs that swallow a SQL error (swallow.ts: the message must come back too).
 */
import { inbox, type Inbox } from '@tidings/inbox';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import type { Effect } from './history.ts';
import type { Swallower } from './swallow.ts';

/** The effects table: one row per application, no unique key, so a double application shows. */
export async function createEffects(pool: pg.Pool, schema: string): Promise<void> {
  await pool.query(`CREATE TABLE IF NOT EXISTS "${schema}".effects (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id text NOT NULL, key text, record text
  )`);
}

export async function readEffects(pool: pg.Pool | pg.ClientBase, schema: string): Promise<Effect[]> {
  const { rows } = await pool.query<{ event_id: string; key: string | null; record: string | null }>(
    `SELECT event_id, key, record FROM "${schema}".effects ORDER BY seq`,
  );
  return rows.map((row) => (row.record === null ? { eventId: row.event_id, key: row.key } : { eventId: row.event_id, key: row.key, record: row.record }));
}

/** A pg client, or a tidings `Executor`: anything that runs a statement in the caller's transaction. */
export interface Queryable {
  query(text: string, params?: unknown[]): Promise<unknown>;
}

/** Writes one effect row inside the inbox transaction; `holdMs` keeps that transaction open a while. */
export async function applyEffect(trx: Queryable, schema: string, message: Effect, holdMs = 0): Promise<void> {
  await trx.query(`INSERT INTO "${schema}".effects (event_id, key, record) VALUES ($1, $2, $3)`, [message.eventId, message.key, message.record ?? null]);
  if (holdMs > 0) await trx.query('SELECT pg_sleep($1)', [holdMs / 1000]);
}

/** A message handed to a consumer: the event's id, key and payload. */
export interface Delivery extends Effect {
  readonly payload: unknown;
}

export class InboxConsumer {
  readonly #pool: pg.Pool;
  readonly #schema: string;
  readonly #inbox: Inbox;
  readonly #swallower: Swallower;
  readonly #queue: Delivery[] = [];
  #duplicates = 0;
  #crashes = 0;
  #busy = false;
  #stopped = false;

  constructor(pool: pg.Pool, schema: string, swallower: Swallower) {
    this.#pool = pool;
    this.#schema = schema;
    this.#swallower = swallower;
    this.#inbox = inbox({ consumer: 'property', schema });
  }

  push(message: Delivery): void {
    this.#queue.push({ eventId: message.eventId, key: message.key, payload: message.payload });
    void this.#drain();
  }

  /** The next `count` messages are handled twice, concurrently, as a racing redelivery would be. */
  duplicateNext(count: number): void {
    this.#duplicates += count;
  }

  /** The next message is applied and committed, then the consumer crashes before acknowledging it. */
  crashNext(): void {
    this.#crashes++;
  }

  get idle(): boolean {
    return !this.#busy && this.#queue.length === 0;
  }

  stop(): void {
    this.#stopped = true;
  }

  async #drain(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      while (!this.#stopped && this.#queue.length > 0) {
        const message = this.#queue[0]!;
        try {
          if (this.#duplicates > 0) {
            this.#duplicates--;
            await Promise.all([this.#apply(message, 50), this.#apply(message, 50)]);
          } else {
            await this.#apply(message, 0);
          }
        } catch {
          await sleep(50); // the database hiccuped: the message stays first in line
          continue;
        }
        this.#queue.shift();
        if (this.#crashes > 0) {
          // Committed but never acknowledged: the source hands it over again after the restart.
          this.#crashes--;
          this.#queue.unshift(message);
        }
      }
    } finally {
      this.#busy = false;
    }
  }

  async #apply(message: Delivery, holdMs: number): Promise<void> {
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const effect = { eventId: message.eventId, key: message.key };
      await this.#inbox.handle(client, message.eventId, (trx) => this.#swallower.handle(trx, message, () => applyEffect(trx, this.#schema, effect, holdMs)));
      await client.query('COMMIT');
    } catch (error) {
      broken = error as Error;
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release(broken);
    }
  }
}
