import { PGlite } from '@electric-sql/pglite';
import { NotInTransactionError, pgliteDatabase, publish, TransactionAbortedError, type Executor } from '@tidings/outbox';
import { inPgTransaction, toExecutor } from '@tidings/outbox/internal';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countEvents, freshOutbox, type TestOutbox } from '../../../test/support/db.ts';

let outbox: TestOutbox;
let kysely: Kysely<Record<string, never>>;
let orders: string;

beforeAll(async () => {
  outbox = await freshOutbox('trx', { partitions: 4 });
  kysely = new Kysely({ dialect: new PostgresDialect({ pool: outbox.pool }) });
  orders = `"${outbox.schema}".orders`;
  await outbox.db.query(`CREATE TABLE ${orders} (id text PRIMARY KEY)`);
});
afterAll(async () => {
  // kysely shares the outbox's pool, which close() ends.
  await outbox?.close();
});

/** Writes a row, then hits a unique violation and swallows it, as a careless handler would. */
async function swallowAUniqueViolation(trx: Executor, id: string): Promise<void> {
  await trx.query(`INSERT INTO ${orders} (id) VALUES ($1)`, [id]);
  try {
    await trx.query(`INSERT INTO ${orders} (id) VALUES ($1)`, [id]);
  } catch {
    // swallowed: the transaction is now aborted
  }
}

const rows = async (id: string) => (await outbox.db.query(`SELECT 1 FROM ${orders} WHERE id = $1`, [id])).rowCount;

describe('a transaction that tidings commits', () => {
  it('rejects with TransactionAbortedError when PostgreSQL answers COMMIT with ROLLBACK (pgDatabase)', async () => {
    const error = await outbox.db.transaction((trx) => swallowAUniqueViolation(trx, 'db-1')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransactionAbortedError);
    expect((error as Error).message).toMatch(/did not commit.*SAVEPOINT/s);
    expect(await rows('db-1')).toBe(0);
  });

  it('rejects the same way on a pg Pool, and the pool stays usable', async () => {
    const error = await inPgTransaction(outbox.pool, (client) => swallowAUniqueViolation(toExecutor(client), 'pool-1')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransactionAbortedError);
    expect(await rows('pool-1')).toBe(0);
    await inPgTransaction(outbox.pool, (client) => client.query(`INSERT INTO ${orders} (id) VALUES ('pool-2')`));
    expect(await rows('pool-2')).toBe(1);
  });

  it('passes on what PostgreSQL says when it refuses COMMIT itself (a deferred constraint)', async () => {
    const table = `"${outbox.schema}".deferred`;
    await outbox.db.query(`CREATE TABLE ${table} (id int UNIQUE DEFERRABLE INITIALLY DEFERRED)`);
    const error = await inPgTransaction(outbox.pool, async (client) => {
      await client.query(`INSERT INTO ${table} VALUES (1), (1)`);
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: '23505' });
    expect((await outbox.db.query(`SELECT 1 FROM ${table}`)).rowCount).toBe(0);
  });

  it('is refused by kysely too (kysely checks the COMMIT tag itself)', async () => {
    const error = await kysely
      .transaction()
      .execute(async (trx) => {
        await sql`INSERT INTO ${sql.raw(orders)} (id) VALUES ('kysely-1')`.execute(trx);
        await sql`INSERT INTO ${sql.raw(orders)} (id) VALUES ('kysely-1')`.execute(trx).catch(() => {});
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect(await rows('kysely-1')).toBe(0);
  });

  it('is refused on the embedded database (PGlite)', async () => {
    const pglite = await PGlite.create();
    try {
      const db = pgliteDatabase(pglite);
      await db.query('CREATE TABLE orders (id text PRIMARY KEY)');
      const error = await db
        .transaction(async (trx) => {
          await trx.query(`INSERT INTO orders (id) VALUES ('a')`);
          await trx.query(`INSERT INTO orders (id) VALUES ('a')`).catch(() => {});
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(Error);
      expect((await db.query('SELECT 1 FROM orders')).rowCount).toBe(0);
    } finally {
      await pglite.close();
    }
  });
});

describe('publish() outside the caller transaction', () => {
  it('refuses a tidings Database and a bare executor over a pool, before writing', async () => {
    const before = await countEvents(outbox);
    const options = { schema: outbox.schema };
    await expect(publish(outbox.db, { topic: 't', payload: 1 }, options)).rejects.toThrow(NotInTransactionError);
    await expect(publish(toExecutor(outbox.pool), { topic: 't', payload: 1 }, options)).rejects.toThrow(NotInTransactionError);
    // An executor of the caller's own making that cannot tell: the server is asked.
    const handmade: Executor = { query: (text, params) => outbox.db.query(text, params) };
    await expect(publish(handmade, { topic: 't', payload: 1 }, options)).rejects.toThrow(NotInTransactionError);
    expect(await countEvents(outbox)).toBe(before);
  });

  it('refuses the embedded Database outside a transaction and accepts its transactions', async () => {
    const pglite = await PGlite.create();
    try {
      const { migrate } = await import('@tidings/outbox');
      const db = pgliteDatabase(pglite);
      await migrate(db, { partitions: 2 });
      await expect(publish(db, { topic: 't', payload: 1 })).rejects.toThrow(NotInTransactionError);
      await db.transaction((trx) => publish(trx, { topic: 't', payload: 2 }));
      const { rows: events } = await db.query<{ payload: unknown }>('SELECT payload FROM tidings.events');
      expect(events.map((e) => e.payload)).toEqual([2]);
    } finally {
      await pglite.close();
    }
  });

  it('accepts a handmade executor on a connection inside BEGIN, and its events roll back with it', async () => {
    const client = await outbox.pool.connect();
    try {
      const handmade: Executor = { query: async (text, params) => toExecutor(client).query(text, params) };
      await client.query('BEGIN');
      const [event] = await publish(handmade, { topic: 'rolled.back', payload: 1 }, { schema: outbox.schema });
      await client.query('ROLLBACK');
      const { rowCount } = await outbox.db.query(`SELECT 1 FROM "${outbox.schema}".events WHERE event_id = $1`, [event!.eventId]);
      expect(rowCount).toBe(0);
    } finally {
      client.release();
    }
  });
});
