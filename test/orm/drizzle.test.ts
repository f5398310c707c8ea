import { drizzle as drizzlePg, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { drizzle as drizzlePostgresJs, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import { pgSchema, text } from 'drizzle-orm/pg-core';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import postgres from 'postgres';
import { services } from '../support/env.ts';
import type { TransactionOf } from '@tidings/relays/polling';
import { describeOrmHandle, sameType, type BusinessTable } from './orm-suite.ts';

/** The business tables as Drizzle declares them, in the suite's schema. */
function tables(schema: string) {
  const s = pgSchema(schema);
  return { orders: s.table('orders', { id: text('id').primaryKey() }), effects: s.table('effects', { id: text('id').notNull() }) } satisfies Record<BusinessTable, unknown>;
}

type PgTx = Parameters<Parameters<NodePgDatabase['transaction']>[0]>[0];
type PostgresJsTx = Parameters<Parameters<PostgresJsDatabase['transaction']>[0]>[0];

describeOrmHandle<PgTx>('Drizzle on node-postgres: the tx of db.transaction()', async (schema) => {
  const pool = new pg.Pool({ connectionString: services.postgres, max: 4 });
  const db = drizzlePg({ client: pool });
  sameType<TransactionOf<typeof db>, PgTx>(true);
  const t = tables(schema);
  return {
    transaction: (fn) => db.transaction(fn),
    txid: async (tx) => (await tx.execute<{ t: string }>(sql`SELECT txid_current()::text AS t`)).rows[0]!.t,
    insert: async (tx, table, id) => {
      await tx.insert(t[table]).values({ id });
    },
    swallowError: async (tx) => {
      await tx.execute(sql`SELECT 1/0`).catch(() => {});
    },
    source: db,
    outside: [db],
    close: () => pool.end(),
  };
});

describeOrmHandle<PostgresJsTx>('Drizzle on postgres.js: the tx of db.transaction()', async (schema) => {
  const client = postgres(services.postgres, { max: 4, onnotice: () => {} });
  const db = drizzlePostgresJs({ client });
  sameType<TransactionOf<typeof db>, PostgresJsTx>(true);
  const t = tables(schema);
  return {
    transaction: (fn) => db.transaction(fn),
    txid: async (tx) => (await tx.execute<{ t: string }>(sql`SELECT txid_current()::text AS t`))[0]!.t,
    insert: async (tx, table, id) => {
      await tx.insert(t[table]).values({ id });
    },
    swallowError: async (tx) => {
      await tx.execute(sql`SELECT 1/0`).catch(() => {});
    },
    source: db,
    outside: [db],
    close: () => client.end(),
  };
});
