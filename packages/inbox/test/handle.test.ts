import { inbox, InvalidInputError, NotInTransactionError, SchemaMissingError, ConfigError } from '@tidings/inbox';
import { pgDatabase, type TransactionHandle } from '@tidings/outbox';
import { toExecutor } from '@tidings/outbox/internal';
import type { Transaction } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { services } from '../../../test/support/env.ts';
import { applyWithPg, backendPid, freshSchema, isSettled, waitUntilBlocked, type TestDb, type TestTables } from './support.ts';

let t: TestDb;
let consumerSeq = 0;
/** Every test uses a consumer of its own, so tests in this file never see each other's marks. */
const newInbox = () => inbox({ consumer: `consumer-${++consumerSeq}`, schema: t.schema });

beforeAll(async () => {
  t = await freshSchema();
});
afterAll(async () => {
  await t?.drop();
});

function applyWithKysely(consumer: string, eventId: string) {
  return async (trx: Transaction<TestTables>) => {
    await trx.insertInto('effects').values({ consumer, event_id: eventId }).execute();
    return eventId;
  };
}

describe('inbox.handle()', () => {
  it('applies an event delivered many times in a row exactly once (kysely Transaction)', async () => {
    const box = newInbox();
    const outcomes = [];
    for (let i = 0; i < 5; i++) {
      outcomes.push(await t.kysely.transaction().execute((trx) => box.handle(trx, 'evt-1', applyWithKysely(box.consumer, 'evt-1'))));
    }
    expect(outcomes).toEqual([{ applied: true, result: 'evt-1' }, ...Array(4).fill({ applied: false })]);
    expect(await t.effectCounts(box.consumer)).toEqual(new Map([['evt-1', 1]]));
    expect(await t.inboxRows(box.consumer)).toBe(1);
  });

  it('applies an event delivered many times in a row exactly once (pg PoolClient after BEGIN)', async () => {
    const box = newInbox();
    const client = await t.pool.connect();
    try {
      let applied = 0;
      for (let i = 0; i < 5; i++) {
        await client.query('BEGIN');
        const outcome = await box.handle(client, { eventId: 'evt-1' }, (c) => applyWithPg(c, t.schema, box.consumer, 'evt-1'));
        await client.query('COMMIT');
        if (outcome.applied) applied++;
      }
      expect(applied).toBe(1);
    } finally {
      client.release();
    }
    expect(await t.effectCounts(box.consumer)).toEqual(new Map([['evt-1', 1]]));
  });

  it('works with a pg Client, a kysely ControlledTransaction and a Database transaction executor', async () => {
    const box = newInbox();
    const client = new pg.Client({ connectionString: services.postgres });
    await client.connect();
    try {
      await client.query('BEGIN');
      expect((await box.handle(client, 'a', (c) => applyWithPg(c, t.schema, box.consumer, 'a'))).applied).toBe(true);
      await client.query('COMMIT');
    } finally {
      await client.end();
    }

    const controlled = await t.kysely.startTransaction().execute();
    expect((await box.handle(controlled, 'b', applyWithKysely(box.consumer, 'b'))).applied).toBe(true);
    await controlled.commit().execute();

    // A plain Executor cannot tell whether it is in a transaction: the server is asked.
    const outcome = await t.db.transaction((trx) => box.handle(trx, 'c', (e) => applyWithPg(e, t.schema, box.consumer, 'c')));
    expect(outcome.applied).toBe(true);
    const again = await t.db.transaction((trx) => box.handle(trx, 'a', () => 'never'));
    expect(again).toEqual({ applied: false });

    expect(await t.effectCounts(box.consumer)).toEqual(new Map([['a', 1], ['b', 1], ['c', 1]]));
  });

  it('skips a duplicate of an event handled earlier in the same transaction', async () => {
    const box = newInbox();
    const outcomes = await t.kysely.transaction().execute(async (trx) => [
      await box.handle(trx, 'evt', applyWithKysely(box.consumer, 'evt')),
      await box.handle(trx, 'evt', applyWithKysely(box.consumer, 'evt')),
    ]);
    expect(outcomes.map((o) => o.applied)).toEqual([true, false]);
    expect(await t.effectCounts(box.consumer)).toEqual(new Map([['evt', 1]]));
  });

  it('applies an event once when many transactions handle it concurrently', async () => {
    const box = newInbox();
    const outcomes = await Promise.all(
      Array.from({ length: 12 }, () =>
        t.kysely.transaction().execute((trx) => box.handle(trx, 'hot', applyWithKysely(box.consumer, 'hot'))),
      ),
    );
    expect(outcomes.filter((o) => o.applied)).toHaveLength(1);
    expect(await t.effectCounts(box.consumer)).toEqual(new Map([['hot', 1]]));
  });

  it('makes a concurrent duplicate wait for the first transaction, then skip it when that one commits', async () => {
    const box = newInbox();
    const [first, second] = [await t.pool.connect(), await t.pool.connect()];
    const secondPid = await backendPid(second);
    try {
      await first.query('BEGIN');
      await second.query('BEGIN');
      expect((await box.handle(first, 'e', (c) => applyWithPg(c, t.schema, box.consumer, 'e'))).applied).toBe(true);

      let secondRan = false;
      const pending = box.handle(second, 'e', async (c) => {
        secondRan = true;
        await applyWithPg(c, t.schema, box.consumer, 'e');
      });
      await waitUntilBlocked(t.pool, secondPid);
      expect(await isSettled(pending)).toBe(false);

      await first.query('COMMIT');
      expect(await pending).toEqual({ applied: false });
      expect(secondRan).toBe(false);
      await second.query('COMMIT');
    } finally {
      first.release();
      second.release();
    }
    expect(await t.effectCounts(box.consumer)).toEqual(new Map([['e', 1]]));
  });

  it('makes a concurrent duplicate wait for the first transaction, then apply it when that one rolls back', async () => {
    const box = newInbox();
    const [first, second] = [await t.pool.connect(), await t.pool.connect()];
    const secondPid = await backendPid(second);
    try {
      await first.query('BEGIN');
      await second.query('BEGIN');
      expect((await box.handle(first, 'e', (c) => applyWithPg(c, t.schema, box.consumer, 'e'))).applied).toBe(true);

      const pending = box.handle(second, 'e', (c) => applyWithPg(c, t.schema, box.consumer, 'e'));
      await waitUntilBlocked(t.pool, secondPid);
      expect(await isSettled(pending)).toBe(false);

      await first.query('ROLLBACK');
      expect((await pending).applied).toBe(true);
      await second.query('COMMIT');
    } finally {
      first.release();
      second.release();
    }
    expect(await t.effectCounts(box.consumer)).toEqual(new Map([['e', 1]]));
    expect(await t.inboxRows(box.consumer)).toBe(1);
  });

  it('ends the wait of a REPEATABLE READ duplicate in a serialization failure, and its retry skips', async () => {
    const box = newInbox();
    const [first, second] = [await t.pool.connect(), await t.pool.connect()];
    const secondPid = await backendPid(second);
    try {
      await first.query('BEGIN');
      await second.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await second.query('SELECT 1'); // takes the snapshot before the first transaction commits
      await box.handle(first, 'e', (c) => applyWithPg(c, t.schema, box.consumer, 'e'));
      const pending = box.handle(second, 'e', (c) => applyWithPg(c, t.schema, box.consumer, 'e'));
      pending.catch(() => {});
      await waitUntilBlocked(t.pool, secondPid);
      await first.query('COMMIT');
      await expect(pending).rejects.toMatchObject({ code: '40001' });
      await second.query('ROLLBACK');

      await second.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      expect(await box.handle(second, 'e', (c) => applyWithPg(c, t.schema, box.consumer, 'e'))).toEqual({ applied: false });
      await second.query('COMMIT');
    } finally {
      first.release();
      second.release();
    }
    expect(await t.effectCounts(box.consumer)).toEqual(new Map([['e', 1]]));
  });

  it('leaves no dedup mark when the transaction rolls back, so a redelivery applies the event', async () => {
    const box = newInbox();
    const client = await t.pool.connect();
    try {
      await client.query('BEGIN');
      expect((await box.handle(client, 'e', (c) => applyWithPg(c, t.schema, box.consumer, 'e'))).applied).toBe(true);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    expect(await t.inboxRows(box.consumer)).toBe(0);

    const failure = new Error('handler failed');
    await expect(
      t.kysely.transaction().execute((trx) =>
        box.handle(trx, 'e', async (trx) => {
          await applyWithKysely(box.consumer, 'e')(trx);
          throw failure;
        }),
      ),
    ).rejects.toBe(failure);
    expect(await t.inboxRows(box.consumer)).toBe(0);
    expect(await t.effectCounts(box.consumer)).toEqual(new Map());

    const redelivery = await t.kysely.transaction().execute((trx) => box.handle(trx, 'e', applyWithKysely(box.consumer, 'e')));
    expect(redelivery.applied).toBe(true);
    expect(await t.effectCounts(box.consumer)).toEqual(new Map([['e', 1]]));
  });

  it('keeps consumers apart: each consumer applies the same event once', async () => {
    const [a, b] = [newInbox(), newInbox()];
    for (const box of [a, b, a, b]) {
      await t.kysely.transaction().execute((trx) => box.handle(trx, 'shared', applyWithKysely(box.consumer, 'shared')));
    }
    expect(await t.effectCounts(a.consumer)).toEqual(new Map([['shared', 1]]));
    expect(await t.effectCounts(b.consumer)).toEqual(new Map([['shared', 1]]));
  });

  describe('refuses, before writing anything, a handle that is not inside a transaction', () => {
    const refusals: Array<[string, (t: TestDb) => Promise<{ handle: TransactionHandle; done(): Promise<void> }>]> = [
      ['a pg Pool', async (t) => ({ handle: t.pool, done: async () => {} })],
      ['a kysely instance that is not a Transaction', async (t) => ({ handle: t.kysely, done: async () => {} })],
      ['a pg PoolClient before BEGIN', async (t) => {
        const client = await t.pool.connect();
        return { handle: client, done: async () => client.release() };
      }],
      ['a pg PoolClient after COMMIT', async (t) => {
        const client = await t.pool.connect();
        await client.query('BEGIN');
        await client.query('COMMIT');
        return { handle: client, done: async () => client.release() };
      }],
      ['a pg Client that never ran a query', async () => {
        const client = new pg.Client({ connectionString: services.postgres });
        await client.connect();
        return { handle: client, done: () => client.end() };
      }],
      ['a tidings Database (asked of the server)', async (t) => ({ handle: pgDatabase(t.pool), done: async () => {} })],
      ['an Executor over a client outside BEGIN (asked of the server)', async (t) => {
        const client = await t.pool.connect();
        return { handle: toExecutor(client), done: async () => client.release() };
      }],
    ];
    for (const [name, make] of refusals) {
      it(name, async () => {
        const box = newInbox();
        const { handle, done } = await make(t);
        let called = false;
        try {
          const error = await box
            .handle(handle, 'e', () => {
              called = true;
            })
            .catch((e: unknown) => e);
          expect(error).toBeInstanceOf(NotInTransactionError);
          expect((error as Error).message).toMatch(/inbox\.handle\(\) must run inside the caller's transaction/);
        } finally {
          await done();
        }
        expect(called).toBe(false);
        expect(await t.inboxRows(box.consumer)).toBe(0);
      });
    }

    it('a kysely transaction that has already committed (kysely refuses it too)', async () => {
      const box = newInbox();
      const leaked = await t.kysely.transaction().execute(async (trx) => trx);
      await expect(box.handle(leaked, 'e', () => 'never')).rejects.toThrow(/already committed/);
      expect(await t.inboxRows(box.consumer)).toBe(0);
    });
  });

  it('lets PostgreSQL report a transaction that has already failed', async () => {
    const box = newInbox();
    const client = await t.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT 1/0').catch(() => {});
      await expect(box.handle(client, 'e', () => 'never')).rejects.toMatchObject({ code: '25P02' });
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
  });

  describe('rejects bad input before writing anything', () => {
    const badIds: Array<[string, unknown]> = [
      ['an empty event id', ''],
      ['a numeric event id', 42],
      ['a missing event id', { id: 'x' }],
      ['null', null],
      ['an event id with NUL', 'a\u0000b'],
      ['an event id with a lone surrogate', 'a\uD800b'],
      ['an event id over 1000 bytes', 'é'.repeat(501)],
    ];
    for (const [name, message] of badIds) {
      it(name, async () => {
        const box = newInbox();
        const error = await t.kysely
          .transaction()
          .execute((trx) => box.handle(trx, message as string, () => 'never'))
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(InvalidInputError);
        expect(error).toMatchObject({ field: 'eventId' });
        expect(await t.inboxRows(box.consumer)).toBe(0);
      });
    }

    it('a handler that is not a function', async () => {
      const box = newInbox();
      const error = await t.kysely
        .transaction()
        .execute((trx) => box.handle(trx, 'e', 'nope' as never))
        .catch((e: unknown) => e);
      expect(error).toMatchObject({ name: 'InvalidInputError', field: 'handler' });
      expect(await t.inboxRows(box.consumer)).toBe(0);
    });

    it('a transaction that is no database handle: a type error, and a ConfigError naming the kinds accepted', async () => {
      const box = newInbox();
      let called = false;
      // @ts-expect-error a number is no transaction handle
      const error = await box.handle(42, 'e', () => (called = true)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(/^invalid option "trx": expected a kysely Transaction,.*Prisma interactive \$transaction client; got number\.$/);
      expect(called).toBe(false);
      expect(await t.inboxRows(box.consumer)).toBe(0);
    });

    it('accepts an event id of exactly 1000 bytes', async () => {
      const box = newInbox();
      const id = 'é'.repeat(500);
      const outcome = await t.kysely.transaction().execute((trx) => box.handle(trx, id, () => 1));
      expect(outcome).toEqual({ applied: true, result: 1 });
    });

    it('a bad consumer name or schema name, when the inbox is created', () => {
      expect(() => inbox({ consumer: '' })).toThrow(ConfigError);
      expect(() => inbox({ consumer: 'x'.repeat(201) })).toThrow(/at most 200 bytes/);
      expect(() => inbox({} as never)).toThrow(ConfigError);
      expect(() => inbox({ consumer: 'ok', schema: 'Bad-Name' })).toThrow(ConfigError);
    });
  });

  it('says to run migrateInbox() when the schema was never migrated', async () => {
    const box = inbox({ consumer: 'c', schema: 't_inbox_never_migrated' });
    const viaClient = await t.kysely.transaction().execute((trx) => box.handle(trx, 'e', () => 1)).catch((e: unknown) => e);
    expect(viaClient).toBeInstanceOf(SchemaMissingError);
    expect((viaClient as Error).message).toMatch(/migrateInbox\(\)/);
    const viaServerCheck = await t.db.transaction((trx) => box.handle(trx, 'e', () => 1)).catch((e: unknown) => e);
    expect(viaServerCheck).toBeInstanceOf(SchemaMissingError);
  });
});

