import { randomBytes } from 'node:crypto';
import { pgDatabase, type Database } from '@tidings/outbox';
import { migrateInbox } from '@tidings/inbox';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { services } from '../../../test/support/env.ts';

/** The business table the tests' handlers write to: no unique key, so a double apply shows. */
export interface TestTables {
  effects: { consumer: string; event_id: string };
}

export interface TestDb {
  readonly schema: string;
  readonly pool: pg.Pool;
  readonly db: Database;
  readonly kysely: Kysely<TestTables>;
  /** How many times each event's effect was applied for `consumer`. */
  effectCounts(consumer: string): Promise<Map<string, number>>;
  inboxRows(consumer?: string): Promise<number>;
  drop(): Promise<void>;
}

/** A fresh, migrated schema `t_inbox_<random>` of its own for one test file. */
export async function freshSchema(options: { migrate?: boolean } = {}): Promise<TestDb> {
  const schema = `t_inbox_${randomBytes(5).toString('hex')}`;
  const pool = new pg.Pool({ connectionString: services.postgres, max: 20 });
  pool.on('error', () => {});
  const db = pgDatabase(pool);
  await pool.query(`CREATE SCHEMA ${schema}`);
  await pool.query(`CREATE TABLE ${schema}.effects (consumer text NOT NULL, event_id text NOT NULL)`);
  if (options.migrate ?? true) await migrateInbox(db, { schema });
  const kysely = new Kysely<TestTables>({
    dialect: new PostgresDialect({ pool }),
  }).withSchema(schema);
  return {
    schema,
    pool,
    db,
    kysely,
    async effectCounts(consumer) {
      const { rows } = await pool.query<{ event_id: string; n: number }>(
        `SELECT event_id, count(*)::int AS n FROM ${schema}.effects WHERE consumer = $1 GROUP BY event_id`,
        [consumer],
      );
      return new Map(rows.map((row) => [row.event_id, row.n]));
    },
    async inboxRows(consumer) {
      const { rows } = await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${schema}.inbox WHERE $1::text IS NULL OR consumer = $1`,
        [consumer ?? null],
      );
      return rows[0]!.n;
    },
    async drop() {
      try {
        await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } finally {
        await pool.end();
      }
    },
  };
}

/** Applies an event's effect with a pg client (or any handle with query()). */
export async function applyWithPg(client: { query(text: string, params: unknown[]): Promise<unknown> }, schema: string, consumer: string, eventId: string): Promise<void> {
  await client.query(`INSERT INTO ${schema}.effects (consumer, event_id) VALUES ($1, $2)`, [consumer, eventId]);
}

/** Resolves once backend `pid` is waiting for a lock (held by another transaction). */
export async function waitUntilBlocked(pool: pg.Pool, pid: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await pool.query<{ wait_event_type: string | null }>(
      'SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1',
      [pid],
    );
    if (rows[0]?.wait_event_type === 'Lock') return;
    if (Date.now() > deadline) throw new Error(`backend ${pid} never waited for a lock (state: ${JSON.stringify(rows[0])})`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export async function backendPid(client: pg.PoolClient): Promise<number> {
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return rows[0]!.pid;
}

/** Tells whether a promise has settled yet, without waiting for it. */
export async function isSettled(promise: Promise<unknown>): Promise<boolean> {
  const pending = Symbol('pending');
  const winner = await Promise.race([promise.then(() => true, () => true), new Promise((resolve) => setImmediate(() => resolve(pending)))]);
  return winner !== pending;
}
