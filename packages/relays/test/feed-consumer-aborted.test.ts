import { randomBytes } from 'node:crypto';
import { migrateInbox } from '@tidings/inbox';
import type { Executor } from '@tidings/outbox';
import { pollingConsumer } from '@tidings/relays/polling';
import { sseConsumer, type FeedDelivery, type ReceivedEvent } from '@tidings/relays/sse';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';

let feed: FeedServer;
let schema: string;

beforeAll(async () => {
  feed = await startFeedServer('feed_aborted');
  schema = `t_feed_aborted_${randomBytes(4).toString('hex')}`;
  await feed.outbox.db.query(`CREATE SCHEMA "${schema}"`);
  await feed.outbox.db.query(`CREATE TABLE "${schema}".effects (n int NOT NULL)`);
  await migrateInbox(feed.outbox.db, { schema });
});
afterAll(async () => {
  await feed.outbox.db.query(`DROP SCHEMA "${schema}" CASCADE`);
  await feed.close();
});

const kinds = { sse: { path: '/events', make: sseConsumer }, polling: { path: '/feed', make: pollingConsumer } } as const;

describe.each(['sse', 'polling'] as const)('the %s consumer with a handler that swallows a SQL error', (kind) => {
  it('commits neither the effect nor the cursor of that try, and applies the event once when the handler stops failing', async () => {
    const topic = `aborted.${kind}.${randomBytes(3).toString('hex')}`;
    let swallows = 2;
    const handler = async (trx: Executor, event: ReceivedEvent<FeedDelivery>) => {
      await trx.query(`INSERT INTO "${schema}".effects (n) VALUES ($1)`, [event.payload]);
      if (event.payload === 2 && swallows-- > 0) await trx.query('SELECT 1/0').catch(() => {});
    };
    await feed.publish([1, 2, 3].map((n) => ({ topic, key: 'k', payload: n })));
    const consumer = kinds[kind].make({
      url: `${feed.origin}${kinds[kind].path}?topics=${topic}`,
      consumer: `aborted-${topic}`,
      schema,
      database: feed.outbox.db,
      handler,
      retry: { minDelayMs: 20, maxDelayMs: 100 },
    });
    try {
      const effects = async () => (await feed.outbox.db.query<{ n: number }>(`SELECT n FROM "${schema}".effects`)).rows.map((r) => r.n).sort();
      await waitUntil('the three events applied', async () => (await effects()).length >= 3);
      expect(swallows).toBeLessThan(0);
      expect(await effects()).toEqual([1, 2, 3]);
    } finally {
      await consumer.close();
      await feed.outbox.db.query(`TRUNCATE "${schema}".effects`);
    }
  });
});
