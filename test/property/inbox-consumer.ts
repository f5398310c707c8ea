/**
 * The consumer side for destinations without a consumer helper of their own (memory, table): takes
 * messages in arrival order and applies each through the inbox — the dedup mark and the effect row
 * in one transaction. Faults: the next messages handed over twice at once (a redelivery racing the
 * first delivery), and a crash after the commit but before the acknowledgement (the message comes
 * back).
 */
import { inbox, type Inbox } from '@tidings/inbox';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import type { Effect } from './history.ts';

/** The effects table: one row per application, no unique key, so a double application shows. */
export async function createEffects(pool: pg.Pool, schema: string): Promise<void> {
  await pool.query(`CREATE TABLE IF NOT EXISTS "${schema}".effects (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id text NOT NULL, key text
  )`);
}

export async function readEffects(pool: pg.Pool | pg.ClientBase, schema: string): Promise<Effect[]> {
  const { rows } = await pool.query<{ event_id: string; key: string | null }>(`SELECT event_id, key FROM "${schema}".effects ORDER BY seq`);
  return rows.map((row) => ({ eventId: row.event_id, key: row.key }));
}

/** A pg client, or a tidings `Executor`: anything that runs a statement in the caller's transaction. */
export interface Queryable {
  query(text: string, params?: unknown[]): Promise<unknown>;
}

/** Writes one effect row inside the inbox transaction; `holdMs` keeps that transaction open a while. */
export async function applyEffect(trx: Queryable, schema: string, message: Effect, holdMs = 0): Promise<void> {
  await trx.query(`INSERT INTO "${schema}".effects (event_id, key) VALUES ($1, $2)`, [message.eventId, message.key]);
  if (holdMs > 0) await trx.query('SELECT pg_sleep($1)', [holdMs / 1000]);
}

export class InboxConsumer {
  readonly #pool: pg.Pool;
  readonly #schema: string;
  readonly #inbox: Inbox;
  readonly #queue: Effect[] = [];
  #duplicates = 0;
  #crashes = 0;
  #busy = false;
  #stopped = false;

  constructor(pool: pg.Pool, schema: string) {
    this.#pool = pool;
    this.#schema = schema;
    this.#inbox = inbox({ consumer: 'property', schema });
  }

  push(message: Effect): void {
    this.#queue.push({ eventId: message.eventId, key: message.key });
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

  async #apply(message: Effect, holdMs: number): Promise<void> {
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      await this.#inbox.handle(client, message.eventId, (trx) => applyEffect(trx, this.#schema, message, holdMs));
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
