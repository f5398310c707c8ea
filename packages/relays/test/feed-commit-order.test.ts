import { comparePositions, publish, type OutboxEvent } from '@tidings/outbox';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSse, pollFeed, pollFeedAll, type SseReader } from '@tidings/relays/testing';
import { judge, waitUntil } from '../../../test/support/check.ts';
import { inCommitOrder } from '../../../test/support/db.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';

let feed: FeedServer;

beforeAll(async () => {
  feed = await startFeedServer('feed_order');
});
afterAll(async () => {
  await feed.close();
});

/** A long-polling reader: every event it was given, in order. */
function longPoller(after: string): { events: { eventId: string; key: string | null }[]; stop(): Promise<void> } {
  const events: { eventId: string; key: string | null }[] = [];
  let running = true;
  const loop = (async () => {
    let cursor = after;
    while (running) {
      const { status, body } = await pollFeed(feed.origin, { after: cursor, wait: 1, limit: 7 });
      if (status !== 200) throw new Error(`poll answered ${status}: ${JSON.stringify(body)}`);
      events.push(...body.events);
      cursor = body.next;
    }
  })();
  return {
    events,
    async stop() {
      running = false;
      await loop;
    },
  };
}

describe('feed readers under concurrent, out-of-order and rolled-back transactions', () => {
  it('see exactly the committed events, in the same order for every reader', async () => {
    const { body: now } = await pollFeed(feed.origin, { after: 'now' });
    const live: SseReader[] = await Promise.all([openSse(`${feed.origin}/events`), openSse(`${feed.origin}/events?after=${now.next}`)]);
    const pollers = [longPoller(now.next), longPoller(now.next)];
    const committed: OutboxEvent[] = [];
    let rolledBack = 0;

    // An explicit out-of-order pair: the older transaction commits last, after a younger one.
    const older = await feed.outbox.pool.connect();
    await older.query('BEGIN');
    const olderEvents = await publish(older, { topic: 'order.pair', key: 'pair', payload: 'older' }, { schema: feed.outbox.schema });
    committed.push(...(await feed.publish({ topic: 'order.pair', key: 'pair2', payload: 'younger' })));

    const writers = Array.from({ length: 40 }, async (_, writer) => {
      for (let round = 0; round < 4; round++) {
        const client = await feed.outbox.pool.connect();
        try {
          await client.query('BEGIN');
          const events = await publish(
            client,
            Array.from({ length: 1 + ((writer + round) % 3) }, (_, i) => ({ topic: 'order.load', key: `k${(writer * 7 + i) % 5}`, payload: { writer, round, i } })),
            { schema: feed.outbox.schema },
          );
          await sleep(Math.random() * 30);
          if (Math.random() < 0.25) {
            await client.query('ROLLBACK');
            rolledBack += events.length;
          } else {
            await client.query('COMMIT');
            committed.push(...events);
          }
        } finally {
          client.release();
        }
      }
    });
    await sleep(100);
    await older.query('COMMIT');
    older.release();
    committed.push(...olderEvents);
    await Promise.all(writers);

    // A reader that arrives afterwards and catches up from the start reads the same log.
    const late = await openSse(`${feed.origin}/events?after=${now.next}`);
    const readers = [...live, late];
    await waitUntil('every SSE reader has every committed event', async () => readers.every((r) => r.events.length >= committed.length));
    await waitUntil('every long poller has every committed event', async () => pollers.every((p) => p.events.length >= committed.length));
    await sleep(300);
    await Promise.all(pollers.map((p) => p.stop()));
    for (const reader of readers) reader.close();
    const paged = (await pollFeedAll(feed.origin, now.next, 9)).events;

    // The log's order is the same for every reader: commit number, then row id.
    const inLogOrder = await inCommitOrder(feed.outbox.db, feed.outbox.schema, committed);
    const logOrder = inLogOrder.map((e) => e.eventId);
    const sequences = [...readers.map((r) => r.events), ...pollers.map((p) => p.events), paged];
    for (const sequence of sequences) {
      const report = judge(inLogOrder, sequence.map((e) => ({ event_id: e.eventId, key: e.key })));
      expect(report).toEqual({ lost: [], unexpected: [], duplicated: {}, outOfOrder: [] });
      expect(sequence.map((e) => e.eventId)).toEqual(logOrder);
    }
    expect(rolledBack).toBeGreaterThan(0);
    // The older transaction wrote first but committed last: its event comes after the younger one's.
    expect(logOrder.indexOf(olderEvents[0]!.eventId)).toBeGreaterThan(logOrder.indexOf(committed[0]!.eventId));
  });
});
