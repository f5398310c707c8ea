import { publish } from '@tidings/outbox';
import { eventsPassed, publishedSince } from '@tidings/outbox/internal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';

let outbox: TestOutbox;
beforeAll(async () => {
  outbox = await freshOutbox('throughput', { partitions: 3 });
});
afterAll(() => outbox.close());

const events = (n: number, topic = 'orders.created') => Array.from({ length: n }, (_, i) => ({ topic, key: `k${i}`, payload: { i } }));

describe('counting published events', () => {
  it('counts the events committed after the marks, never those rolled back, and gives the marks of the next count', async () => {
    const { schema } = outbox;
    const first = await publishedSince(outbox.db, { schema });
    expect(first).toEqual({ heads: ['0', '0', '0'], events: 0 });
    await inTransaction(outbox.pool, (trx) => publish(trx, events(3), { schema }));
    await inTransaction(outbox.pool, async (trx) => {
      await publish(trx, events(5), { schema });
      throw new Error('rolled back');
    }).catch(() => {});
    await inTransaction(outbox.pool, (trx) => publish(trx, events(4), { schema }));
    const second = await publishedSince(outbox.db, { schema, since: first.heads });
    expect(second.events).toBe(7);
    expect(second.heads).toHaveLength(3);
    expect(await publishedSince(outbox.db, { schema, since: second.heads })).toEqual({ heads: second.heads, events: 0 });
    // Without marks, it only takes them: what exists already is not counted as new.
    expect((await publishedSince(outbox.db, { schema })).events).toBe(0);
    await inTransaction(outbox.pool, (trx) => publish(trx, events(2), { schema }));
    expect((await publishedSince(outbox.db, { schema, since: second.heads, limit: 1 })).events).toBe(1);
  });

  it('counts the events relay cursors passed, each relay through its own filter', async () => {
    const { schema, db } = outbox;
    await inTransaction(outbox.pool, (trx) => publish(trx, [...events(3, 'orders.paid'), ...events(2, 'users.joined')].map((e) => ({ ...e, key: 'one-key' })), { schema }));
    const { rows } = await db.query<{ partition: number; seq: string; id: string; topic: string }>(
      `SELECT e.partition, c.seq::text, e.id::text, e.topic FROM "${schema}".commits c
       JOIN "${schema}".events e ON e.partition = c.partition AND e.tx_id = c.tx_id AND e.id BETWEEN c.first_id AND c.last_id
       WHERE e.key = 'one-key' ORDER BY c.seq, e.id`,
    );
    expect(rows).toHaveLength(5);
    const partition = rows[0]!.partition;
    const before = { seq: rows[0]!.seq, id: String(BigInt(rows[0]!.id) - 1n) };
    const at = (i: number) => ({ seq: rows[i]!.seq, id: rows[i]!.id });
    const moves = [
      { relay: 'all', partition, from: before, to: at(4) },
      { relay: 'orders-only', partition, from: before, to: at(4) },
      { relay: 'partly', partition, from: at(0), to: at(2) },
    ];
    expect(await eventsPassed(db, moves.slice(0, 1), { schema })).toBe(5);
    expect(await eventsPassed(db, moves.slice(1, 2), { schema, filters: { 'orders-only': { topics: ['orders.*'] } } })).toBe(3);
    expect(await eventsPassed(db, moves.slice(2), { schema })).toBe(2);
    expect(await eventsPassed(db, moves, { schema, filters: { 'orders-only': { topics: ['orders.*'] } } })).toBe(10);
    expect(await eventsPassed(db, [], { schema })).toBe(0);
  });
});
