import { randomBytes } from 'node:crypto';
import { comparePositions, migrate, pgDatabase, type Database, type Executor, type OutboxEvent } from '@tidings/outbox';
import pg from 'pg';
import { services } from './env.ts';

export interface TestOutbox {
  readonly schema: string;
  /** tidings' own handle (relays, admin calls). */
  readonly db: Database & { close(): Promise<void> };
  /** A separate pool playing the service that writes business transactions. */
  readonly pool: pg.Pool;
  close(): Promise<void>;
}

/** A freshly migrated outbox in a schema of its own, so test files never see each other's events. */
export async function freshOutbox(label: string, options: { partitions?: number } = {}): Promise<TestOutbox> {
  const schema = `t_${label}_${randomBytes(4).toString('hex')}`;
  const db = pgDatabase(services.postgres);
  await migrate(db, { schema, ...options });
  const pool = new pg.Pool({ connectionString: services.postgres, max: 10 });
  pool.on('error', () => {});
  return {
    schema,
    db,
    pool,
    async close() {
      await pool.end();
      await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await db.close();
    },
  };
}

/** Runs `fn` in a transaction of the business pool and commits it. */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

export async function countEvents(outbox: TestOutbox): Promise<number> {
  const { rows } = await outbox.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${outbox.schema}".events`);
  return rows[0]!.n;
}

/**
 * The events `publish()` returned, with the log positions their transactions were given at COMMIT
 * (publish cannot know them), sorted in log order: per partition, commit order.
 */
export async function inCommitOrder(db: Executor, schema: string, events: readonly OutboxEvent[]): Promise<OutboxEvent[]> {
  const { rows } = await db.query<{ event_id: string; seq: string }>(
    `SELECT e.event_id, c.seq::text AS seq FROM "${schema}".events e
     JOIN "${schema}".commits c ON c.partition = e.partition AND c.tx_id = e.tx_id AND e.id BETWEEN c.first_id AND c.last_id
     WHERE e.event_id = ANY($1::text[])`,
    [events.map((e) => e.eventId)],
  );
  const seqOf = new Map(rows.map((row) => [row.event_id, row.seq]));
  const placed = events.map((event) => {
    const seq = seqOf.get(event.eventId);
    if (seq === undefined) throw new Error(`event ${event.eventId} has no commit in "${schema}": was its transaction committed?`);
    const { eventId, topic, key, partition, payload, headers, tenant, createdAt } = event;
    return { eventId, topic, key, partition, payload, headers, tenant, createdAt, position: { seq, id: event.position.id } };
  });
  return placed.sort((a, b) => comparePositions(a.position, b.position));
}
