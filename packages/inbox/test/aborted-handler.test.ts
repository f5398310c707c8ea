import { inbox } from '@tidings/inbox';
import { TransactionAbortedError, type Executor } from '@tidings/outbox';
import { toExecutor } from '@tidings/outbox/internal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshSchema, type TestDb } from './support.ts';

let t: TestDb;
let seq = 0;
const newInbox = () => inbox({ consumer: `swallow-${++seq}`, schema: t.schema });

beforeAll(async () => {
  t = await freshSchema();
  await t.pool.query(`CREATE TABLE ${t.schema}.orders (id text PRIMARY KEY)`);
});
afterAll(async () => {
  await t?.drop();
});

/** A handler that writes its effect, then hits a unique violation and swallows the error. */
function swallowingHandler(schema: string, consumer: string, eventId: string) {
  return async (trx: Executor) => {
    await trx.query(`INSERT INTO ${schema}.effects (consumer, event_id) VALUES ($1, $2)`, [consumer, eventId]);
    await trx.query(`INSERT INTO ${schema}.orders (id) VALUES ('dup') ON CONFLICT DO NOTHING`);
    await trx.query(`INSERT INTO ${schema}.orders (id) VALUES ('dup')`).catch(() => {});
  };
}

describe('inbox.handle() with a handler that swallows a SQL error', () => {
  it('rejects on a pg client inside BEGIN, so the caller rolls back instead of acknowledging', async () => {
    const box = newInbox();
    const client = await t.pool.connect();
    try {
      await client.query('BEGIN');
      const executor = toExecutor(client);
      const outcome = await box.handle(client, 'evt-1', () => swallowingHandler(t.schema, box.consumer, 'evt-1')(executor)).catch((e: unknown) => e);
      expect(outcome).toBeInstanceOf(TransactionAbortedError);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
    expect(await t.inboxRows(box.consumer)).toBe(0);
    // Redelivered with a handler that no longer fails: applied once.
    await t.db.transaction((trx) => box.handle(trx, 'evt-1', (trx) => trx.query(`INSERT INTO ${t.schema}.effects VALUES ($1, 'evt-1')`, [box.consumer])));
    expect(await t.effectCounts(box.consumer)).toEqual(new Map([['evt-1', 1]]));
  });

  it('rejects inside a tidings Database transaction', async () => {
    const box = newInbox();
    const error = await t.db.transaction((trx) => box.handle(trx, 'evt-2', swallowingHandler(t.schema, box.consumer, 'evt-2'))).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransactionAbortedError);
    expect(await t.inboxRows(box.consumer)).toBe(0);
    expect(await t.effectCounts(box.consumer)).toEqual(new Map());
  });

  it('asks the server when the handle cannot tell (an executor of the caller making)', async () => {
    const box = newInbox();
    const client = await t.pool.connect();
    try {
      const handmade: Executor = { query: (text, params) => toExecutor(client).query(text, params) };
      await client.query('BEGIN');
      const error = await box.handle(handmade, 'evt-3', swallowingHandler(t.schema, box.consumer, 'evt-3')).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TransactionAbortedError);
      expect((error as TransactionAbortedError).what).toBe('inbox.handle()');
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
    expect(await t.inboxRows(box.consumer)).toBe(0);
  });

  it('still applies normally when the handler recovers with a savepoint', async () => {
    const box = newInbox();
    await t.db.transaction((trx) =>
      box.handle(trx, 'evt-4', async (trx) => {
        await trx.query(`INSERT INTO ${t.schema}.effects VALUES ($1, 'evt-4')`, [box.consumer]);
        await trx.query(`INSERT INTO ${t.schema}.orders (id) VALUES ('dup4')`);
        await trx.query('SAVEPOINT maybe');
        await trx.query(`INSERT INTO ${t.schema}.orders (id) VALUES ('dup4')`).catch(() => trx.query('ROLLBACK TO SAVEPOINT maybe'));
      }),
    );
    expect(await t.effectCounts(box.consumer)).toEqual(new Map([['evt-4', 1]]));
  });
});
