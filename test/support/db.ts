import { randomBytes } from 'node:crypto';
import { migrate, pgDatabase, type Database } from '@tidings/outbox';
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
