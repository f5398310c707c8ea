import { randomBytes } from 'node:crypto';
import { inbox, migrateInbox } from '@tidings/inbox';
import { comparePositions, CursorExpiredError, decodePosition, type Executor, encodePosition } from '@tidings/outbox';
import { pollingConsumer } from '@tidings/relays/polling';
import { AccessDeniedError, sseConsumer, type FeedConsumerEvent, type FeedDelivery, type ReceivedEvent } from '@tidings/relays/sse';
import { websocketConsumer } from '@tidings/relays/websocket';
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
  websocket: { path: '/ws', make: websocketConsumer as typeof sseConsumer },
} as const;

/** The checkpoint name: the URL (the WebSocket consumer subscribes to its topics in a message, so it is named). */
const sourceOf = (kind: keyof typeof kinds, topic: string): string => `${feed.origin}${kinds[kind].path}?topics=${topic}`;

function consumerOf(kind: keyof typeof kinds, topic: string, handler: (trx: Executor, event: ReceivedEvent<FeedDelivery>) => unknown, extra: object = {}) {
  const where = kind === 'websocket' ? { url: `${feed.wsOrigin}/ws`, topics: [topic], source: sourceOf(kind, topic) } : { url: sourceOf(kind, topic) };
  return kinds[kind].make({
    ...where,
    consumer: `c-${topic}`,
    schema,
    database: feed.outbox.db,
    handler,
    retry: { minDelayMs: 20, maxDelayMs: 200 },
    reconnect: { minDelayMs: 20, maxDelayMs: 200 },
    ...extra,
  });
}

describe.each(['sse', 'polling', 'websocket'] as const)('the %s consumer', (kind) => {
  it('applies events in log order and resumes after a restart from the cursor committed with the last one', async () => {
    const topic = `consume.${kind}.${randomBytes(3).toString('hex')}`;
    const seen: unknown[] = [];
    const first = await feed.publish([1, 2, 3].map((n) => ({ topic, payload: n })));
    const consumer = consumerOf(kind, topic, (_trx, event) => void seen.push(event.payload));
    await waitUntil('three events applied', async () => seen.length === 3);
    await consumer.close();
    // The SSE and WebSocket consumers store each event's cursor; the polling one stores the page's end with the last.
    expect(comparePositions(decodePosition(consumer.cursor!), first[2]!.position)).toBeGreaterThanOrEqual(0);
    if (kind !== 'polling') expect(consumer.cursor).toBe(encodePosition(first[2]!.position));
    await expect(consumer.done).resolves.toBeUndefined();

    await feed.publish([4, 5].map((n) => ({ topic, payload: n })));
    const again = consumerOf(kind, topic, (_trx, event) => void seen.push(event.payload));
    await waitUntil('the two new events applied', async () => seen.length === 5);
    await again.close();
    expect(seen).toEqual([1, 2, 3, 4, 5]);
  });

  it('tries an event again after its handler throws, never skipping it, and commits nothing of the failed tries', async () => {
    const topic = `retry.${kind}.${randomBytes(3).toString('hex')}`;
    await feed.outbox.db.query(`CREATE TABLE IF NOT EXISTS "${schema}".effects (payload jsonb)`);
    let failures = 0;
    const events: FeedConsumerEvent[] = [];
    const attempts: number[] = [];
    await feed.publish([1, 2].map((n) => ({ topic, payload: n })));
    const consumer = consumerOf(
      kind,
      topic,
      async (trx, event) => {
        if (event.payload === 1) attempts.push(event.attempt);
        await trx.query(`INSERT INTO "${schema}".effects (payload) VALUES ($1)`, [JSON.stringify({ topic, n: event.payload })]);
        if (event.payload === 1 && failures < 2) {
          failures++;
          throw new Error('not yet');
        }
      },
      { onEvent: (event: FeedConsumerEvent) => events.push(event) },
    );
    const applied = async () =>
      (await feed.outbox.db.query<{ n: number }>(`SELECT (payload->>'n')::int AS n FROM "${schema}".effects WHERE payload->>'topic' = $1`, [topic])).rows;
    await waitUntil('both events applied', async () => (await applied()).length === 2);
    await consumer.close();
    expect((await applied()).map((row) => row.n)).toEqual([1, 2]);
    const retries = events.filter((e) => e.type === 'retry-scheduled');
    expect(retries.map((e) => [e.attempt, String(e.error)])).toEqual([[1, 'Error: not yet'], [2, 'Error: not yet']]);
    expect(attempts).toEqual([1, 2, 3]);
    expect(events.filter((e) => e.type === 'committed').map((e) => e.attempt)).toEqual([3, 1]);
  });

  it('hands the handler the one received-event type: a Date, its cursor, the attempt', async () => {
    const topic = `shape.${kind}.${randomBytes(3).toString('hex')}`;
    const [published] = await feed.publish([{ topic, key: 'k1', payload: { n: 1 }, headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' } }]);
    const seen: ReceivedEvent<FeedDelivery>[] = [];
    const consumer = consumerOf(kind, topic, (_trx, event) => void seen.push(event));
    await waitUntil('the event applied', async () => seen.length === 1);
    await consumer.close();
    const event = seen[0]!;
    expect(event).toMatchObject({ eventId: published!.eventId, topic, key: 'k1', tenant: null, payload: { n: 1 }, attempt: 1 });
    expect(event.headers).toEqual({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' });
    expect(event.createdAt).toBeInstanceOf(Date);
    expect(event.createdAt!.getTime()).toBe(published!.createdAt.getTime());
    expect(event.delivery).toEqual({ transport: kind, cursor: encodePosition(published!.position) });
  });

  it('stops with CursorExpiredError when its checkpoint fell behind retention', async () => {
    const topic = `expire.${kind}.${randomBytes(3).toString('hex')}`;
    const [old, kept] = await feed.publish([1, 2].map((n) => ({ topic, payload: n })));
    await feed.outbox.db.transaction((trx) =>
      inbox({ consumer: `c-${topic}`, schema }).saveCheckpoint(trx, {
        source: sourceOf(kind, topic),
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
    const consumer = consumerOf('sse', topic, (_trx, event) => void seen.push(event.payload));
    await waitUntil('the consumer is connected', async () => feed.sse.connections > 0);
    const [, second] = await feed.publish([1, 2].map((n) => ({ topic, payload: n })));
    // The handler runs inside the transaction: wait for the commit, not for the handler.
    const committed = encodePosition(second!.position);
    await waitUntil('two events applied and committed', async () => seen.length === 2 && consumer.cursor === committed);
    const requests = feed.sseRequests.length;
    feed.sseRequests.at(-1)!.socket.destroy();
    await feed.publish([3, 4].map((n) => ({ topic, payload: n })));
    await waitUntil('the events published while it was away applied', async () => seen.length === 4);
    await consumer.close();
    expect(seen).toEqual([1, 2, 3, 4]);
    expect(feed.sseRequests.length).toBe(requests + 1);
    expect(feed.sseRequests.at(-1)!.headers['last-event-id']).toBe(committed);
  });
});
