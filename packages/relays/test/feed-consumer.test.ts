import { randomBytes } from 'node:crypto';
import { inbox, migrateInbox } from '@tidings/inbox';
import { comparePositions, CursorExpiredError, decodePosition, type Executor, encodePosition } from '@tidings/outbox';
import { pollingConsumer } from '@tidings/relays/polling';
import { AccessDeniedError, sseConsumer, type FeedEnvelope } from '@tidings/relays/sse';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';

let feed: FeedServer;
let schema: string;

beforeAll(async () => {
  feed = await startFeedServer('feed_consumer');
  schema = `t_feed_consumer_${randomBytes(4).toString('hex')}`;
  await feed.outbox.db.query(`CREATE SCHEMA "${schema}"`);
  await migrateInbox(feed.outbox.db, { schema });
});
afterAll(async () => {
  await feed.outbox.db.query(`DROP SCHEMA "${schema}" CASCADE`);
  await feed.close();
});

const kinds = {
  sse: { path: '/events', make: sseConsumer },
  polling: { path: '/feed', make: pollingConsumer },
} as const;

function consumerOf(kind: keyof typeof kinds, topic: string, handle: (event: FeedEnvelope, trx: Executor) => unknown, extra: object = {}) {
  return kinds[kind].make({
    url: `${feed.origin}${kinds[kind].path}?topics=${topic}`,
    database: feed.outbox.db,
    inbox: inbox({ consumer: `c-${topic}`, schema }),
    handle,
    backoff: { initialMs: 20, maxMs: 200 },
    ...extra,
  });
}

describe.each(['sse', 'polling'] as const)('the %s consumer', (kind) => {
  it('applies events in log order and resumes after a restart from the cursor committed with the last one', async () => {
    const topic = `consume.${kind}.${randomBytes(3).toString('hex')}`;
    const seen: unknown[] = [];
    const first = await feed.publish([1, 2, 3].map((n) => ({ topic, payload: n })));
    const consumer = consumerOf(kind, topic, (event) => void seen.push(event.payload));
    await waitUntil('three events applied', async () => seen.length === 3);
    await consumer.stop();
    // The SSE consumer stores each event's cursor; the polling one stores the page's end with the last.
    expect(comparePositions(decodePosition(consumer.cursor!), first[2]!.position)).toBeGreaterThanOrEqual(0);
    if (kind === 'sse') expect(consumer.cursor).toBe(encodePosition(first[2]!.position));
    await expect(consumer.done).resolves.toBeUndefined();

    await feed.publish([4, 5].map((n) => ({ topic, payload: n })));
    const again = consumerOf(kind, topic, (event) => void seen.push(event.payload));
    await waitUntil('the two new events applied', async () => seen.length === 5);
    await again.stop();
    expect(seen).toEqual([1, 2, 3, 4, 5]);
  });

  it('tries an event again after its handler throws, never skipping it, and commits nothing of the failed tries', async () => {
    const topic = `retry.${kind}.${randomBytes(3).toString('hex')}`;
    await feed.outbox.db.query(`CREATE TABLE IF NOT EXISTS "${schema}".effects (payload jsonb)`);
    let failures = 0;
    const errors: unknown[] = [];
    await feed.publish([1, 2].map((n) => ({ topic, payload: n })));
    const consumer = consumerOf(
      kind,
      topic,
      async (event, trx) => {
        await trx.query(`INSERT INTO "${schema}".effects (payload) VALUES ($1)`, [JSON.stringify({ topic, n: event.payload })]);
        if (event.payload === 1 && failures < 2) {
          failures++;
          throw new Error('not yet');
        }
      },
      { onError: (error: unknown) => errors.push(error) },
    );
    const applied = async () =>
      (await feed.outbox.db.query<{ n: number }>(`SELECT (payload->>'n')::int AS n FROM "${schema}".effects WHERE payload->>'topic' = $1`, [topic])).rows;
    await waitUntil('both events applied', async () => (await applied()).length === 2);
    await consumer.stop();
    expect((await applied()).map((row) => row.n)).toEqual([1, 2]);
    expect(errors.map(String)).toEqual(['Error: not yet', 'Error: not yet']);
  });

  it('stops with CursorExpiredError when its checkpoint fell behind retention', async () => {
    const topic = `expire.${kind}.${randomBytes(3).toString('hex')}`;
    const [old, kept] = await feed.publish([1, 2].map((n) => ({ topic, payload: n })));
    await feed.outbox.db.transaction((trx) =>
      inbox({ consumer: `c-${topic}`, schema }).saveCheckpoint(trx, {
        source: `${feed.origin}${kinds[kind].path}?topics=${topic}`,
        position: encodePosition(old!.position),
      }),
    );
    const horizon = `"${feed.outbox.schema}".retention_horizon`;
    await feed.outbox.db.query(`INSERT INTO ${horizon} (partition, seq, id) VALUES (0, $1, $2)`, [kept!.position.seq, kept!.position.id]);
    try {
      const consumer = consumerOf(kind, topic, () => {});
      await expect(consumer.done).rejects.toBeInstanceOf(CursorExpiredError);
    } finally {
      await feed.outbox.db.query(`DELETE FROM ${horizon}`);
    }
  });

  it('stops with AccessDeniedError when the feed refuses it', async () => {
    const consumer = consumerOf(kind, 'denied', () => {}, { headers: { 'x-deny': '401' } });
    await expect(consumer.done).rejects.toMatchObject({ name: 'AccessDeniedError', status: 401 });
    await expect(consumer.done).rejects.toBeInstanceOf(AccessDeniedError);
  });
});

describe('the SSE consumer', () => {
  it('reconnects with its committed cursor when the server drops the stream, and misses nothing', async () => {
    const topic = `drop.${randomBytes(3).toString('hex')}`;
    const seen: unknown[] = [];
    const consumer = consumerOf('sse', topic, (event) => void seen.push(event.payload));
    await waitUntil('the consumer is connected', async () => feed.sse.connections > 0);
    const [, second] = await feed.publish([1, 2].map((n) => ({ topic, payload: n })));
    // The handler runs inside the transaction: wait for the commit, not for the handler.
    const committed = encodePosition(second!.position);
    await waitUntil('two events applied and committed', async () => seen.length === 2 && consumer.cursor === committed);
    const requests = feed.sseRequests.length;
    feed.sseRequests.at(-1)!.socket.destroy();
    await feed.publish([3, 4].map((n) => ({ topic, payload: n })));
    await waitUntil('the events published while it was away applied', async () => seen.length === 4);
    await consumer.stop();
    expect(seen).toEqual([1, 2, 3, 4]);
    expect(feed.sseRequests.length).toBe(requests + 1);
    expect(feed.sseRequests.at(-1)!.headers['last-event-id']).toBe(committed);
  });
});
