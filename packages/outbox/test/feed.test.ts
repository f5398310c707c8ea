import { cleanup, CursorExpiredError, encodePosition, publish, readFeed, type OutboxEvent, type Position } from '@tidings/outbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';

let outbox: TestOutbox;
beforeAll(async () => {
  outbox = await freshOutbox('feed', { partitions: 4 });
});
afterAll(async () => {
  await outbox.close();
});

async function drain(after: Position | 'start', filter: { topics?: string[]; tenant?: string } = {}): Promise<{ events: OutboxEvent[]; next: Position }> {
  const events: OutboxEvent[] = [];
  let cursor: Position | 'start' = after;
  for (;;) {
    const page = await readFeed(outbox.db, outbox.schema, { after: cursor, limit: 4, ...filter });
    events.push(...page.events);
    cursor = page.next;
    if (!page.hasMore) return { events, next: page.next };
  }
}

describe('the feed reader', () => {
  it('reads every partition in one global order, the same for every reader, with tenant and topic filters', async () => {
    const { schema } = outbox;
    const now = (await readFeed(outbox.db, schema, { after: 'now', limit: 10 })).next;
    const published = await inTransaction(outbox.pool, (c) =>
      publish(
        c,
        Array.from({ length: 10 }, (_, i) => ({ topic: i % 2 ? 'a.odd' : 'b.even', key: `k${i}`, payload: i, tenant: i < 5 ? 't1' : 't2' })),
        { schema },
      ),
    );
    const all = await waitUntil('visible', async () => {
      const page = await drain(now);
      return page.events.length === 10 && page;
    });
    expect(all.events.map((e) => e.eventId)).toEqual(published.map((e) => e.eventId));
    expect((await drain(now)).events.map((e) => e.eventId)).toEqual(published.map((e) => e.eventId));
    expect((await drain(now, { tenant: 't2' })).events.map((e) => e.payload)).toEqual([5, 6, 7, 8, 9]);
    expect((await drain(now, { topics: ['a.*'], tenant: 't1' })).events.map((e) => e.payload)).toEqual([1, 3]);
    expect((await drain(all.next)).events).toEqual([]);
  });

  it('says a cursor has expired once retention deleted events after it', async () => {
    const { schema } = outbox;
    const before = (await readFeed(outbox.db, schema, { after: 'now', limit: 1 })).next;
    await inTransaction(outbox.pool, (c) => publish(c, [{ topic: 'old', payload: 1 }], { schema }));
    await waitUntil('visible', async () => (await drain(before)).events.length === 1);
    await waitUntil('deleted', async () => (await cleanup(outbox.db, { schema, retentionMs: 1 })).events > 0 || undefined);
    const error = await readFeed(outbox.db, schema, { after: before, limit: 10 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CursorExpiredError);
    expect((error as CursorExpiredError).cursor).toBe(encodePosition(before));
    // 'start' means the oldest event still kept: never expired.
    await expect(readFeed(outbox.db, schema, { after: 'start', limit: 10 })).resolves.toBeDefined();
  });
});
