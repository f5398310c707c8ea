import { logStart, publish, readPartition, type OutboxEvent, type Position } from '@tidings/outbox';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';

let outbox: TestOutbox;
beforeAll(async () => {
  outbox = await freshOutbox('read', { partitions: 1 });
});
afterAll(async () => {
  await outbox.close();
});

async function begin(): Promise<pg.PoolClient> {
  const client = await outbox.pool.connect();
  await client.query('BEGIN');
  return client;
}

async function readAll(after: Position, topics?: string[], tenant?: string): Promise<{ events: OutboxEvent[]; cursor: Position }> {
  const events: OutboxEvent[] = [];
  let cursor = after;
  for (;;) {
    const page = await readPartition(outbox.db, outbox.schema, { partition: 0, after: cursor, limit: 3, topics, tenant });
    events.push(...page.events);
    cursor = page.scannedTo;
    if (page.events.length < 3) return { events, cursor };
  }
}

/** Reads until `count` events came (or time runs out). */
async function readUntil(after: Position, count: number, topics?: string[]): Promise<{ events: OutboxEvent[]; cursor: Position }> {
  const events: OutboxEvent[] = [];
  let cursor = after;
  const deadline = Date.now() + 10_000;
  while (events.length < count && Date.now() < deadline) {
    const page = await readAll(cursor, topics);
    events.push(...page.events);
    cursor = page.cursor;
    if (events.length < count) await new Promise((r) => setTimeout(r, 50));
  }
  return { events, cursor };
}

describe('the log reader', () => {
  it('never skips a transaction that commits after a later one, and is held back by none (the bigserial gap)', async () => {
    const { schema } = outbox;
    let cursor = (await readAll(logStart)).cursor;
    const slow = await begin();
    const fast = await begin();
    const rolledBack = await begin();
    await publish(slow, { topic: 'gap', payload: 'slow' }, { schema });
    await publish(fast, [{ topic: 'gap', payload: 'fast-1' }, { topic: 'gap', payload: 'fast-2' }], { schema });
    await publish(rolledBack, { topic: 'gap', payload: 'rolled-back' }, { schema });
    await fast.query('COMMIT');
    await rolledBack.query('ROLLBACK');
    rolledBack.release();

    // `slow` wrote first but is still open: the transaction that committed is read at once, and
    // reading on while `slow` stays open finds nothing more, however often the reader polls.
    const early = await readAll(cursor);
    expect(early.events.map((e) => e.payload)).toEqual(['fast-1', 'fast-2']);
    cursor = early.cursor;
    for (let poll = 0; poll < 5; poll++) {
      const page = await readAll(cursor);
      expect(page.events.map((e) => e.payload)).toEqual([]);
      cursor = page.cursor;
    }
    await slow.query('COMMIT');
    slow.release();
    fast.release();

    const { events, cursor: end } = await readUntil(cursor, 1);
    expect(events.map((e) => e.payload)).toEqual(['slow']);
    expect((await readPartition(outbox.db, schema, { partition: 0, after: end, limit: 3 })).events).toEqual([]);
  });

  it('pages in commit order and resumes exactly after a cursor', async () => {
    const { schema } = outbox;
    const start = (await readAll(logStart)).cursor;
    for (let i = 0; i < 4; i++) {
      await inTransaction(outbox.pool, (c) => publish(c, [{ topic: 'page', payload: i * 2 }, { topic: 'page', payload: i * 2 + 1 }], { schema }));
    }
    await readUntil(start, 8);
    const first = await readPartition(outbox.db, schema, { partition: 0, after: start, limit: 3 });
    expect(first.events.map((e) => e.payload)).toEqual([0, 1, 2]);
    expect(first.scannedTo).toEqual(first.events[2]!.position);
    const rest = await readAll(first.scannedTo);
    expect(rest.events.map((e) => e.payload)).toEqual([3, 4, 5, 6, 7]);
  });

  it('filters topics by name and by prefix, and moves past what it filtered out', async () => {
    const { schema } = outbox;
    const start = (await readAll(logStart)).cursor;
    await inTransaction(outbox.pool, (c) =>
      publish(
        c,
        [
          { topic: 'orders.created', payload: 1 },
          { topic: 'payments.done', payload: 2 },
          { topic: 'orders.paid', payload: 3 },
          { topic: 'orders_x', payload: 4 },
        ],
        { schema },
      ),
    );
    await readUntil(start, 4);
    const prefix = await readAll(start, ['orders.*']);
    expect(prefix.events.map((e) => e.payload)).toEqual([1, 3]);
    const exact = await readAll(start, ['payments.done', 'orders_x']);
    expect(exact.events.map((e) => e.payload)).toEqual([2, 4]);
    // `_` is not a wildcard: orders_x does not match orders.x
    expect((await readAll(start, ['orders.x'])).events).toEqual([]);
    const after = await readAll(prefix.cursor, ['orders.*']);
    expect(after.events).toEqual([]);
  });

  it("reads only one tenant's events when asked to", async () => {
    const { schema } = outbox;
    const start = (await readAll(logStart)).cursor;
    await inTransaction(outbox.pool, (c) =>
      publish(
        c,
        [
          { topic: 'billing.x', payload: 1, tenant: 'acme' },
          { topic: 'billing.x', payload: 2, tenant: 'globex' },
          { topic: 'billing.x', payload: 3 },
          { topic: 'billing.y', payload: 4, tenant: 'acme' },
        ],
        { schema },
      ),
    );
    await readUntil(start, 4);
    expect((await readAll(start, undefined, 'acme')).events.map((e) => e.payload)).toEqual([1, 4]);
    expect((await readAll(start, ['billing.y'], 'acme')).events.map((e) => e.payload)).toEqual([4]);
    expect((await readAll(start, undefined, 'nobody')).events).toEqual([]);
  });

  it('reads transactions of hundreds of events page by page, resuming inside a transaction, with and without a filter', async () => {
    const { schema } = outbox;
    const start = (await readAll(logStart)).cursor;
    const big = (n: number, tag: string) => Array.from({ length: n }, (_, i) => ({ topic: i % 3 === 0 ? 'bulk.third' : 'bulk.rest', payload: `${tag}${i}` }));
    const published: OutboxEvent[] = [];
    published.push(...(await inTransaction(outbox.pool, (c) => publish(c, big(700, 'a'), { schema }))));
    published.push(...(await inTransaction(outbox.pool, (c) => publish(c, { topic: 'bulk.rest', payload: 'small' }, { schema }))));
    published.push(...(await inTransaction(outbox.pool, (c) => publish(c, big(400, 'b'), { schema }))));
    const pages = async (limit: number, topics?: string[]): Promise<OutboxEvent[]> => {
      const events: OutboxEvent[] = [];
      let cursor = start;
      for (;;) {
        const page = await readPartition(outbox.db, schema, { partition: 0, after: cursor, limit, topics });
        events.push(...page.events);
        cursor = page.scannedTo;
        if (page.events.length < limit) return events;
      }
    };
    const ids = (events: readonly OutboxEvent[]) => events.map((e) => e.payload);
    for (const limit of [1, 7, 250, 500, 2000]) expect(ids(await pages(limit))).toEqual(ids(published));
    const thirds = published.filter((e) => e.topic === 'bulk.third');
    for (const limit of [5, 100, 500]) expect(ids(await pages(limit, ['bulk.third']))).toEqual(ids(thirds));
    // A cursor naming the largest event id there can be inside a commit: the rest of that commit is
    // past it, and reading on finds the next commits (no arithmetic on the id that could overflow).
    const firstCommit = (await pages(2000))[0]!.position.seq;
    const past = await readPartition(outbox.db, schema, { partition: 0, after: { seq: firstCommit, id: '9223372036854775807' }, limit: 2 });
    expect(ids(past.events)).toEqual(['small', 'b0']);
  });
});
