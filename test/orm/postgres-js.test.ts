import postgres from 'postgres';
import { services } from '../support/env.ts';
import type { TransactionOf } from '@tidings/relays/polling';
import { describeOrmHandle, sameType } from './orm-suite.ts';

describeOrmHandle<postgres.TransactionSql>('postgres.js: the sql of sql.begin()', async (schema) => {
  const sql = postgres(services.postgres, { max: 4, onnotice: () => {} });
  sameType<TransactionOf<typeof sql>, postgres.TransactionSql>(true);
  return {
    transaction: <R>(fn: (trx: postgres.TransactionSql) => Promise<R>) => sql.begin((trx) => fn(trx)) as Promise<R>,
    txid: async (trx) => (await trx<{ t: string }[]>`SELECT txid_current()::text AS t`)[0]!.t,
    insert: async (trx, table, id) => {
      await trx`INSERT INTO ${trx(schema)}.${trx(table)} (id) VALUES (${id})`;
    },
    swallowError: async (trx) => {
      await trx`SELECT 1/0`.catch(() => {});
    },
    source: sql,
    outside: [sql],
    close: () => sql.end(),
  };
});
