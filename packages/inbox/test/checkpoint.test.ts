import { CheckpointConflictError, inbox, InvalidInputError, NotInTransactionError } from '@tidings/inbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyWithPg, backendPid, freshSchema, isSettled, waitUntilBlocked, type TestDb } from './support.ts';

let t: TestDb;
let consumerSeq = 0;
const newInbox = () => inbox({ consumer: `consumer-${++consumerSeq}`, schema: t.schema });

beforeAll(async () => {
  t = await freshSchema();
});
afterAll(async () => {
  await t?.drop();
});

describe('checkpoints', () => {
  it('loads null for a source that has no checkpoint yet', async () => {
    expect(await newInbox().loadCheckpoint(t.db, 'orders/0')).toBeNull();
  });

  it('saves a position together with the effects, and loads it back on any handle', async () => {
    const box = newInbox();
    await t.kysely.transaction().execute(async (trx) => {
      await trx.insertInto('effects').values({ consumer: box.consumer, event_id: 'offset-41' }).execute();
      await box.saveCheckpoint(trx, { source: 'orders/0', position: '42' });
    });
    expect(await box.loadCheckpoint(t.db, 'orders/0')).toBe('42');
    expect(await box.loadCheckpoint(t.pool, 'orders/0')).toBe('42');
    expect(await box.loadCheckpoint(t.kysely, 'orders/0')).toBe('42');
    await t.kysely.transaction().execute(async (trx) => {
      expect(await box.loadCheckpoint(trx, 'orders/0')).toBe('42');
      await box.saveCheckpoint(trx, { source: 'orders/0', position: '43' });
      expect(await box.loadCheckpoint(trx, 'orders/0')).toBe('43');
    });
    expect(await box.loadCheckpoint(t.db, 'orders/0')).toBe('43');
  });

  it('keeps the old position and no effects when the transaction rolls back', async () => {
    const box = newInbox();
    await t.db.transaction((trx) => box.saveCheckpoint(trx, { source: 's', position: 'cursor-1' }));
    const client = await t.pool.connect();
    try {
      await client.query('BEGIN');
      await applyWithPg(client, t.schema, box.consumer, 'from-cursor-1');
      await box.saveCheckpoint(client, { source: 's', position: 'cursor-2' });
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    expect(await box.loadCheckpoint(t.db, 's')).toBe('cursor-1');
    expect(await t.effectCounts(box.consumer)).toEqual(new Map());
  });

  it('keeps sources and consumers apart', async () => {
    const [a, b] = [newInbox(), newInbox()];
    await t.db.transaction(async (trx) => {
      await a.saveCheckpoint(trx, { source: 'orders/0', position: 'a0' });
      await a.saveCheckpoint(trx, { source: 'orders/1', position: 'a1' });
      await b.saveCheckpoint(trx, { source: 'orders/0', position: 'b0' });
    });
    expect(await a.loadCheckpoint(t.db, 'orders/0')).toBe('a0');
    expect(await a.loadCheckpoint(t.db, 'orders/1')).toBe('a1');
    expect(await b.loadCheckpoint(t.db, 'orders/0')).toBe('b0');
    expect(await b.loadCheckpoint(t.db, 'orders/1')).toBeNull();
  });

  describe('with expected (compare-and-set)', () => {
    it('creates the first checkpoint when expected is null, and moves it when expected matches', async () => {
      const box = newInbox();
      await t.db.transaction((trx) => box.saveCheckpoint(trx, { source: 's', position: '1', expected: null }));
      await t.db.transaction((trx) => box.saveCheckpoint(trx, { source: 's', position: '2', expected: '1' }));
      expect(await box.loadCheckpoint(t.db, 's')).toBe('2');
    });

    it('throws CheckpointConflictError when the stored position is not the expected one', async () => {
      const box = newInbox();
      await t.db.transaction((trx) => box.saveCheckpoint(trx, { source: 's', position: '5' }));
      const stale = await t.db.transaction((trx) => box.saveCheckpoint(trx, { source: 's', position: '4', expected: '3' })).catch((e: unknown) => e);
      expect(stale).toBeInstanceOf(CheckpointConflictError);
      expect(stale).toMatchObject({ consumer: box.consumer, source: 's', expected: '3' });
      const exists = await t.db.transaction((trx) => box.saveCheckpoint(trx, { source: 's', position: '1', expected: null })).catch((e: unknown) => e);
      expect(exists).toBeInstanceOf(CheckpointConflictError);
      expect(await box.loadCheckpoint(t.db, 's')).toBe('5');
    });

    it('lets only one of two workers move the checkpoint from the same position', async () => {
      const box = newInbox();
      await t.db.transaction((trx) => box.saveCheckpoint(trx, { source: 'p', position: '10' }));
      const [zombie, owner] = [await t.pool.connect(), await t.pool.connect()];
      const ownerPid = await backendPid(owner);
      try {
        await zombie.query('BEGIN');
        await owner.query('BEGIN');
        await applyWithPg(zombie, t.schema, box.consumer, 'offset-10');
        await box.saveCheckpoint(zombie, { source: 'p', position: '11', expected: '10' });
        await applyWithPg(owner, t.schema, box.consumer, 'offset-10');
        const pending = box.saveCheckpoint(owner, { source: 'p', position: '11', expected: '10' });
        pending.catch(() => {});
        await waitUntilBlocked(t.pool, ownerPid);
        expect(await isSettled(pending)).toBe(false);
        await zombie.query('COMMIT');
        await expect(pending).rejects.toBeInstanceOf(CheckpointConflictError);
        await owner.query('ROLLBACK');
      } finally {
        zombie.release();
        owner.release();
      }
      expect(await box.loadCheckpoint(t.db, 'p')).toBe('11');
      expect(await t.effectCounts(box.consumer)).toEqual(new Map([['offset-10', 1]]));
    });

    it('lets the waiting worker move the checkpoint when the first one rolls back', async () => {
      const box = newInbox();
      const [first, second] = [await t.pool.connect(), await t.pool.connect()];
      const secondPid = await backendPid(second);
      try {
        await first.query('BEGIN');
        await second.query('BEGIN');
        await box.saveCheckpoint(first, { source: 'p', position: '1', expected: null });
        const pending = box.saveCheckpoint(second, { source: 'p', position: '1', expected: null });
        await waitUntilBlocked(t.pool, secondPid);
        await first.query('ROLLBACK');
        await pending;
        await second.query('COMMIT');
      } finally {
        first.release();
        second.release();
      }
      expect(await box.loadCheckpoint(t.db, 'p')).toBe('1');
    });
  });

  it('refuses to save outside a transaction, before writing anything', async () => {
    const box = newInbox();
    await expect(box.saveCheckpoint(t.pool, { source: 's', position: '1' })).rejects.toBeInstanceOf(NotInTransactionError);
    await expect(box.saveCheckpoint(t.db, { source: 's', position: '1' })).rejects.toThrow(/saveCheckpoint\(\) must run inside/);
    await expect(box.saveCheckpoint(t.kysely, { source: 's', position: '1' })).rejects.toBeInstanceOf(NotInTransactionError);
    expect(await box.loadCheckpoint(t.db, 's')).toBeNull();
  });

  it('rejects a bad source, position or expected position before writing anything', async () => {
    const box = newInbox();
    const cases: Array<[string, unknown]> = [
      ['source', { source: '', position: '1' }],
      ['position', { source: 's', position: 7 }],
      ['position', { source: 's', position: 'x'.repeat(8193) }],
      ['expected', { source: 's', position: '1', expected: '' }],
      ['checkpoint', null],
    ];
    for (const [field, input] of cases) {
      const error = await t.db.transaction((trx) => box.saveCheckpoint(trx, input as never)).catch((e: unknown) => e);
      expect(error, JSON.stringify(input)).toBeInstanceOf(InvalidInputError);
      expect(error).toMatchObject({ field });
    }
    await expect(box.loadCheckpoint(t.db, '')).rejects.toBeInstanceOf(InvalidInputError);
    expect(await box.loadCheckpoint(t.db, 's')).toBeNull();
  });
});
