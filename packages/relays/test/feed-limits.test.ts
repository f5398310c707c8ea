import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { migrateInbox } from '@tidings/inbox';
import { FeedResponseError, SseLimitError, sseConsumer } from '@tidings/relays/sse';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSse, pollFeed, type SseReader } from '@tidings/relays/testing';
import { waitUntil } from '../../../test/support/check.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';

let feed: FeedServer;
const limits = { maxConnections: 3, maxConnectionsPerTenant: 2 };

beforeAll(async () => {
  feed = await startFeedServer('feed_limits', { sse: limits, polling: { ...limits, maxWaitSeconds: 30 } });
});
afterAll(async () => {
  await feed.close();
});

const stream = (tenant: string, headers: Record<string, string> = {}): Promise<SseReader> =>
  openSse(`${feed.origin}/events`, { 'x-tenant': tenant, ...headers });

/** A long poll that waits until aborted; resolves with its status, or 0 when aborted. */
function longPoll(tenant: string): { status: Promise<number>; abort(): void } {
  const controller = new AbortController();
  const url = `${feed.origin}/feed?after=now&wait=30`;
  const status = fetch(url, { headers: { 'x-tenant': tenant }, signal: controller.signal }).then(
    async (response) => {
      await response.text().catch(() => '');
      return response.status;
    },
    () => 0,
  );
  return { status, abort: () => controller.abort() };
}

describe('connection limits', () => {
  it('answer an SSE connection beyond the per-tenant or total limit with 429, Retry-After and a problem body', async () => {
    const a1 = await stream('a');
    const a2 = await stream('a');
    const refused = await stream('a');
    await refused.ended;
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBe('5');
    const problem = JSON.parse(refused.messages[0]!.data);
    expect(problem).toMatchObject({ status: 429, error: 'too-many-connections', type: 'urn:tidings:problem:too-many-connections' });
    expect(problem.detail).toMatch(/tenant "a" has 2 SSE connections open, the most this feed allows per tenant/);

    const b1 = await stream('b');
    expect(b1.status).toBe(200);
    const overTotal = await stream('c');
    await overTotal.ended;
    expect(overTotal.status).toBe(429);
    expect(JSON.parse(overTotal.messages[0]!.data).detail).toMatch(/this feed serves 3 SSE connections, the most it allows/);
    for (const reader of [a1, a2, b1]) reader.close();
    await waitUntil('every stream is gone', async () => feed.sse.connections === 0);
  });

  it('free an SSE slot when the client disconnects abruptly, and when a request is refused for another reason', async () => {
    const held = [await stream('a'), await stream('a')];
    // Refused requests (a bad cursor, a refused caller) hold no slot afterwards.
    for (let i = 0; i < 5; i++) {
      const bad = await stream('b', { 'last-event-id': 'not-a-cursor' });
      await bad.ended;
      expect(bad.status).toBe(400);
    }
    // The client vanishes without a word: its socket is destroyed.
    held[0]!.response.socket.destroy();
    await waitUntil('the server notices the client left', async () => feed.sse.connections === 1);
    const again = await stream('a');
    expect(again.status).toBe(200);
    const other = await stream('b');
    expect(other.status).toBe(200);
    for (const reader of [held[1]!, again, other]) reader.close();
    await waitUntil('every stream is gone', async () => feed.sse.connections === 0);
  });

  it('answer a long poll beyond the limits with 429 and Retry-After, count plain polls not at all, and free a slot when a client aborts', async () => {
    const first = longPoll('a');
    const second = longPoll('a');
    await waitUntil('both long polls wait', async () => feed.polling.waiting === 2);
    const refused = await pollFeed(feed.origin, { after: 'now', wait: 30 }, { 'x-tenant': 'a' });
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('5');
    expect(refused.headers.get('content-type')).toBe('application/problem+json');
    expect(refused.body).toMatchObject({ status: 429, error: 'too-many-connections' });
    expect((refused.body as { detail?: string }).detail).toMatch(/tenant "a" has 2 long polls open/);
    // A plain poll is short and holds no slot.
    expect((await pollFeed(feed.origin, { after: 'now' }, { 'x-tenant': 'a' })).status).toBe(200);

    first.abort();
    expect(await first.status).toBe(0);
    await waitUntil('the aborted long poll is gone', async () => feed.polling.waiting === 1);
    const third = longPoll('a');
    await waitUntil('the new long poll waits', async () => feed.polling.waiting === 2);
    // A long poll that ends normally frees its slot too.
    const short = await pollFeed(feed.origin, { after: 'now', wait: 1 }, { 'x-tenant': 'b' });
    expect(short.status).toBe(200);
    const again = await pollFeed(feed.origin, { after: 'now', wait: 1 }, { 'x-tenant': 'b' });
    expect(again.status).toBe(200);
    second.abort();
    third.abort();
    await Promise.all([second.status, third.status]);
    await waitUntil('every long poll is gone', async () => feed.polling.waiting === 0);
  });

  it('refuse limits that are not whole numbers from 1 up', async () => {
    const { sseFeed } = await import('@tidings/relays/sse');
    expect(() => sseFeed({ database: feed.outbox.db, authorize: () => ({}), maxConnections: 0 })).toThrow(/maxConnections/);
    expect(() => sseFeed({ database: feed.outbox.db, authorize: () => ({}), maxConnectionsPerTenant: 1.5 })).toThrow(/maxConnectionsPerTenant/);
  });
});

describe('the SSE consumer against a server that sends an endless line', () => {
  it('closes the stream with SseLimitError once the line passes maxEventLength, and connects again', async () => {
    const schema = `t_feed_limits_${randomBytes(4).toString('hex')}`;
    await feed.outbox.db.query(`CREATE SCHEMA "${schema}"`);
    await migrateInbox(feed.outbox.db, { schema });
    let requests = 0;
    const hostile = createServer((_request, response) => {
      requests++;
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write('data: ');
      const chunk = 'z'.repeat(64 * 1024);
      const flood = (): void => {
        while (!response.destroyed && response.write(chunk));
        if (!response.destroyed) response.once('drain', flood);
      };
      flood();
    });
    await new Promise<void>((resolve) => hostile.listen(0, '127.0.0.1', resolve));
    const errors: unknown[] = [];
    const consumer = sseConsumer({
      url: `http://127.0.0.1:${(hostile.address() as AddressInfo).port}/events`,
      consumer: 'hostile-server',
      schema,
      database: feed.outbox.db,
      handler: () => {},
      maxEventLength: 1024 * 1024,
      reconnect: { minDelayMs: 20, maxDelayMs: 50 },
      onEvent: (event) => {
        if (event.type === 'disconnected') errors.push(event.error);
      },
    });
    try {
      await waitUntil('the consumer gave up on two streams', async () => errors.filter((e) => e instanceof SseLimitError).length >= 2);
      expect(requests).toBeGreaterThanOrEqual(2);
      expect(errors[0]).toMatchObject({ reason: 'line', maxLength: 1024 * 1024 });
    } finally {
      await consumer.close();
      hostile.closeAllConnections();
      hostile.close();
      await feed.outbox.db.query(`DROP SCHEMA "${schema}" CASCADE`);
    }
  });
});

describe('the SSE consumer refused with 429', () => {
  it('asks again no sooner than the Retry-After the feed sent, however short its own backoff', async () => {
    const schema = `t_feed_limits_${randomBytes(4).toString('hex')}`;
    await feed.outbox.db.query(`CREATE SCHEMA "${schema}"`);
    await migrateInbox(feed.outbox.db, { schema });
    const held = [await stream('r'), await stream('r')];
    const refusals: number[] = [];
    const consumer = sseConsumer({
      url: `${feed.origin}/events`,
      headers: { 'x-tenant': 'r' },
      consumer: 'refused',
      schema,
      database: feed.outbox.db,
      handler: () => {},
      reconnect: { minDelayMs: 20, maxDelayMs: 50 },
      onEvent: (event) => {
        if (event.type === 'disconnected' && event.error instanceof FeedResponseError && event.error.status === 429) refusals.push(Date.now());
      },
    });
    try {
      await waitUntil('the consumer was refused twice', async () => refusals.length >= 2, 15_000);
      // Its own backoff would have asked again within 50 ms; the feed said 5 s.
      expect(refusals[1]! - refusals[0]!).toBeGreaterThanOrEqual(4_900);
    } finally {
      await consumer.close();
      for (const reader of held) reader.close();
      await feed.outbox.db.query(`DROP SCHEMA "${schema}" CASCADE`);
    }
  });
});
