import { encodePosition, type Database, type OutboxEvent } from '@tidings/outbox';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createFaultProxy, openWebSocketFeed, type WebSocketReader } from '@tidings/relays/testing';
import { websocketFeed, type SubscribeMessage } from '@tidings/relays/websocket';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';

let feed: FeedServer;
/** Limits of one connection per tenant, and a heartbeat every 100 ms. */
let strict: FeedServer;
const readers: WebSocketReader[] = [];
const unique = (name: string): string => `${name}.${randomBytes(3).toString('hex')}`;
const cursorOf = (event: OutboxEvent): string => encodePosition(event.position);

async function open(subscribe: Partial<SubscribeMessage> | null, headers: Record<string, string> = {}, on = feed): Promise<WebSocketReader> {
  const reader = await openWebSocketFeed(`${on.wsOrigin}/ws`, subscribe && { type: 'subscribe', ...subscribe }, headers);
  readers.push(reader);
  return reader;
}

/** Subscribes and waits for `subscribed`, so that `after: 'now'` stands before what is published next. */
async function subscribed(subscribe: Partial<SubscribeMessage>, headers: Record<string, string> = {}): Promise<WebSocketReader> {
  const reader = await open(subscribe, headers);
  await waitUntil('the feed answered subscribed', () => reader.messages.some((m) => m.type === 'subscribed'));
  return reader;
}

beforeAll(async () => {
  feed = await startFeedServer('websocket');
  strict = await startFeedServer('websocket_strict', { websocket: { maxConnectionsPerTenant: 1, heartbeatMs: 100 } });
});
afterAll(async () => {
  for (const reader of readers) reader.close();
  await Promise.all([feed.close(), strict.close()]);
});

describe('the WebSocket feed', () => {
  it('answers subscribe with subscribed, then sends each committed event of its topics as an event message with its cursor', async () => {
    const topic = unique('orders.created');
    const reader = await subscribed({ after: 'now', topics: [topic] });
    const published = await feed.publish([
      { topic, key: 'k1', payload: { n: 1, text: 'line\nbreak ✓' }, headers: { traceparent: '00-abc-def-01' } },
      { topic: unique('other'), payload: 0 },
      { topic, key: null, payload: [1, 2, 3] },
    ]);
    await reader.waitFor(2);
    const mine = published.filter((e) => e.topic === topic);
    expect(reader.messages[0]).toEqual({ type: 'subscribed', maxInFlight: 100 });
    expect(reader.messages.slice(1)).toEqual(
      mine.map((e) => ({
        type: 'event',
        cursor: cursorOf(e),
        event: { cursor: cursorOf(e), eventId: e.eventId, topic, key: e.key, tenant: null, payload: e.payload, headers: e.headers, createdAt: e.createdAt.toISOString() },
      })),
    );
  });

  it("takes a lower maxInFlight from the subscription, but never more than the feed's", async () => {
    const lower = await subscribed({ after: 'now', topics: [unique('t')], maxInFlight: 3 });
    const higher = await subscribed({ after: 'now', topics: [unique('t')], maxInFlight: 1_000 });
    expect(lower.messages[0]).toEqual({ type: 'subscribed', maxInFlight: 3 });
    expect(higher.messages[0]).toEqual({ type: 'subscribed', maxInFlight: 100 });
  });

  it('refuses a malformed cursor, one beyond the head and an expired one with an error message, then close code 4400 or 4410', async () => {
    const malformed = await open({ after: 'not-a-cursor' });
    expect(await malformed.closed).toEqual({ code: 4400, reason: 'invalid-cursor' });
    expect(malformed.messages).toEqual([{ type: 'error', status: 400, error: 'invalid-cursor', message: expect.stringMatching(/not a tidings cursor/), cursor: 'not-a-cursor' }]);

    const ahead = await open({ after: 'c999999999999-0' });
    expect((await ahead.closed).code).toBe(4400);
    expect(ahead.error()).toMatchObject({ error: 'invalid-cursor', message: expect.stringMatching(/beyond the head/) });

    const topic = unique('expiring');
    const [old, kept] = await feed.publish([{ topic, payload: 1 }, { topic, payload: 2 }]);
    const horizon = `"${feed.outbox.schema}".retention_horizon`;
    await feed.outbox.db.query(
      `INSERT INTO ${horizon} (partition, seq, id) VALUES (0, $1, $2) ON CONFLICT (partition) DO UPDATE SET seq = EXCLUDED.seq, id = EXCLUDED.id`,
      [kept!.position.seq, kept!.position.id],
    );
    try {
      const expired = await open({ after: cursorOf(old!), topics: [topic] });
      expect(await expired.closed).toEqual({ code: 4410, reason: 'cursor-expired' });
      expect(expired.error()).toMatchObject({ status: 410, error: 'cursor-expired', message: expect.stringMatching(/retention/) });
    } finally {
      await feed.outbox.db.query(`DELETE FROM ${horizon}`);
    }
  });

  it('refuses a caller the authorize hook refuses (4401, 4403), and topics it may not read (4403)', async () => {
    const unknown = await open(null, { 'x-deny': '401' });
    expect(await unknown.closed).toEqual({ code: 4401, reason: 'unauthorized' });
    expect(unknown.error()).toMatchObject({ status: 401, error: 'unauthorized', message: 'who are you?' });
    const denied = await open(null, { 'x-deny': 'yes' });
    expect(await denied.closed).toEqual({ code: 4403, reason: 'forbidden' });
    const narrow = await open({ topics: ['billing.paid'] }, { 'x-topics': 'orders.*' });
    expect(await narrow.closed).toEqual({ code: 4403, reason: 'forbidden' });
    expect(narrow.error()?.message).toMatch(/billing\.paid/);
  });

  it('scopes a caller to its tenant and to the topics both it and the hook allow', async () => {
    const [a, b] = [unique('scope.a'), unique('scope.b')];
    const reader = await subscribed({ after: 'now', topics: [`${a.split('.')[0]}.*`] }, { 'x-tenant': 'acme', 'x-topics': a });
    const published = await feed.publish([
      { topic: a, tenant: 'acme', payload: 1 },
      { topic: a, tenant: 'globex', payload: 2 },
      { topic: b, tenant: 'acme', payload: 3 },
      { topic: a, tenant: 'acme', payload: 4 },
    ]);
    await reader.waitFor(2);
    expect(reader.events.map((e) => e.eventId)).toEqual([published[0]!.eventId, published[3]!.eventId]);
  });

  it.each([
    ['text that is not JSON', 'hello', /not JSON/],
    ['an unknown message type', { type: 'unsubscribe' }, /expected subscribe or ack/],
    ['an ack before subscribing', { type: 'ack', cursor: 'c1-1' }, /before the subscription/],
    ['topics that are not topic patterns', { type: 'subscribe', topics: ['a b'] }, /subscribe\.topics/],
    ['a maxInFlight of 0', { type: 'subscribe', maxInFlight: 0 }, /subscribe\.maxInFlight/],
  ])('answers %s with an invalid-request error and close code 4400', async (_what, message, reason) => {
    const reader = await open(null);
    reader.send(message);
    expect(await reader.closed).toEqual({ code: 4400, reason: 'invalid-request' });
    expect(reader.error()).toMatchObject({ status: 400, error: 'invalid-request', message: expect.stringMatching(reason) });
  });

  it('answers a binary frame, a second subscribe and an ack of an event not sent with invalid-request (4400)', async () => {
    const binary = await open(null);
    binary.socket.send(Buffer.from('{"type":"subscribe"}'));
    expect((await binary.closed).code).toBe(4400);
    expect(binary.error()?.message).toMatch(/text frame/);

    const twice = await subscribed({ after: 'now', topics: [unique('twice')] });
    twice.send({ type: 'subscribe', after: 'now' });
    expect((await twice.closed).code).toBe(4400);
    expect(twice.error()?.message).toMatch(/came twice/);

    const topic = unique('ack');
    const [sent, later] = await feed.publish([{ topic, payload: 1 }, { topic, payload: 2 }]);
    const early = await open({ after: 'start', topics: [topic], maxInFlight: 1 });
    await early.waitFor(1);
    early.ack(cursorOf(later!));
    expect((await early.closed).code).toBe(4400);
    expect(early.error()?.message).toMatch(/after the last event sent/);
    expect(early.events.map((e) => e.eventId)).toEqual([sent!.eventId]);
  });

  it('closes a connection whose message exceeds 64 KiB with code 1009', async () => {
    const reader = await open(null);
    reader.send({ type: 'subscribe', topics: ['x'], padding: 'x'.repeat(70 * 1024) });
    expect((await reader.closed).code).toBe(1009);
  });

  it('keeps at most maxInFlight events unacknowledged per connection, and a slow client slows only itself', async () => {
    const topic = unique('credit');
    const published = await feed.publish(Array.from({ length: 30 }, (_, n) => ({ topic, key: `k${n % 3}`, payload: n })));
    let acksSent = 0;
    let released = false;
    const overruns: string[] = [];
    // Acknowledges nothing until released, then only when its credit is used up: the feed must wait for each ack.
    const slow = await openWebSocketFeed(`${feed.wsOrigin}/ws`, { type: 'subscribe', after: 'start', topics: [topic], maxInFlight: 4 }, {}, (message, self) => {
      if (message.type !== 'event') return;
      if (self.events.length > acksSent + 4) overruns.push(`event ${self.events.length} arrived with only ${acksSent} acknowledged`);
      if (released && self.events.length === acksSent + 4) {
        acksSent = self.events.length;
        self.ack(message.cursor);
      }
    });
    readers.push(slow);
    await slow.waitFor(4);
    // While the slow client holds its 4, a fast one on the same feed and topic gets all 30.
    const fast = await open({ after: 'start', topics: [topic] }, {});
    fast.socket.on('message', (data) => {
      const message = JSON.parse(data.toString()) as { type: string; cursor: string };
      if (message.type === 'event') fast.ack(message.cursor);
    });
    await fast.waitFor(30);
    expect(slow.events).toHaveLength(4);
    released = true;
    acksSent = 4;
    slow.ack(slow.events[3]!.cursor);
    await slow.waitFor(30);
    expect(overruns).toEqual([]);
    expect(slow.events.map((e) => e.eventId)).toEqual(published.map((e) => e.eventId));
    expect(fast.events.map((e) => e.eventId)).toEqual(published.map((e) => e.eventId));
  });

  it('refuses a connection beyond maxConnectionsPerTenant with too-many-connections (4429), and takes one again once a slot is free', async () => {
    const first = await open({ after: 'now', topics: ['t'] }, { 'x-tenant': 'busy' }, strict);
    await waitUntil('the first connection holds its slot', () => first.messages.some((m) => m.type === 'subscribed'));
    const second = await open(null, { 'x-tenant': 'busy' }, strict);
    expect(await second.closed).toEqual({ code: 4429, reason: 'too-many-connections' });
    expect(second.error()).toMatchObject({ status: 429, error: 'too-many-connections', message: expect.stringMatching(/maxConnectionsPerTenant/) });
    const other = await open({ after: 'now', topics: ['t'] }, { 'x-tenant': 'calm' }, strict);
    await waitUntil('another tenant is served', () => other.messages.some((m) => m.type === 'subscribed'));
    other.close();
    first.close();
    await waitUntil('both slots are free', () => strict.websocket.connections === 0);
    const third = await open({ after: 'now', topics: ['t'] }, { 'x-tenant': 'busy' }, strict);
    await waitUntil('the tenant is served again', () => third.messages.some((m) => m.type === 'subscribed'));
    third.close();
  });

  it('closes a connection that does not subscribe within heartbeatMs (4400), freeing its slot', async () => {
    const idle = await open(null, { 'x-tenant': 'idle' }, strict);
    expect(await idle.closed).toEqual({ code: 4400, reason: 'invalid-request' });
    expect(idle.error()?.message).toMatch(/subscribe did not come within 100 ms/);
    const again = await open({ after: 'now', topics: ['t'] }, { 'x-tenant': 'idle' }, strict);
    await waitUntil('the tenant is served again', () => again.messages.some((m) => m.type === 'subscribed'));
    again.close();
  });

  it('terminates a peer that stops answering pings, freeing its slot', async () => {
    const proxy = await createFaultProxy({ target: { host: '127.0.0.1', port: Number(new URL(strict.origin).port) } });
    try {
      const reader = await openWebSocketFeed(`ws://127.0.0.1:${proxy.port}/ws`, { type: 'subscribe', after: 'now', topics: ['t'] }, { 'x-tenant': 'vanishing' });
      readers.push(reader);
      await waitUntil('subscribed', () => reader.messages.some((m) => m.type === 'subscribed'));
      // The network loses the connection without telling either side.
      proxy.blackHole();
      await waitUntil('the feed terminated the dead connection', () => strict.websocket.connections === 0);
      const again = await open({ after: 'now', topics: ['t'] }, { 'x-tenant': 'vanishing' }, strict);
      await waitUntil('the tenant is served again', () => again.messages.some((m) => m.type === 'subscribed'));
      again.close();
    } finally {
      await proxy.close();
    }
  });

  it('closes every connection with code 1001 when the feed closes, and refuses new ones the same way', async () => {
    const server = await startFeedServer('websocket_closing');
    try {
      const reader = await openWebSocketFeed(`${server.wsOrigin}/ws`, { type: 'subscribe', after: 'now' });
      await waitUntil('subscribed', () => reader.messages.some((m) => m.type === 'subscribed'));
      const idle = await openWebSocketFeed(`${server.wsOrigin}/ws`, null);
      await server.websocket.close();
      expect((await reader.closed).code).toBe(1001);
      expect((await idle.closed).code).toBe(1001);
      const late = await openWebSocketFeed(`${server.wsOrigin}/ws`, null);
      expect((await late.closed).code).toBe(1001);
    } finally {
      await server.close();
    }
  });

  it('tells a client unavailable (4503) when the log cannot be read, and reports the error to onEvent', async () => {
    const heard: Error[] = [];
    const failing = { ...feed.outbox.db, query: () => Promise.reject(new Error('connection to the database lost')) } as unknown as Database;
    const broken = websocketFeed({ database: failing, authorize: () => ({}), onEvent: (event) => heard.push(event.error) });
    const server = createServer();
    server.on('upgrade', (request, socket, head) => broken.handle(request, socket, head));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const reader = await openWebSocketFeed(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/ws`, { type: 'subscribe', after: 'start' });
      expect(await reader.closed).toEqual({ code: 4503, reason: 'unavailable' });
      expect(reader.error()).toEqual({ type: 'error', status: 503, error: 'unavailable', message: expect.not.stringMatching(/database/) });
      expect(heard.map((e) => e.message)).toContain('connection to the database lost');
    } finally {
      await broken.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('refuses bad options with a ConfigError before anything happens', () => {
    const database = feed.outbox.db;
    const authorize = () => ({});
    expect(() => websocketFeed({ database, authorize, maxInFlight: 0 })).toThrow(expect.objectContaining({ name: 'ConfigError', message: expect.stringMatching(/maxInFlight/) }));
    expect(() => websocketFeed({ database, authorize, heartbeatMs: -1 })).toThrow(expect.objectContaining({ name: 'ConfigError', message: expect.stringMatching(/heartbeatMs/) }));
    expect(() => websocketFeed({ database } as never)).toThrow(expect.objectContaining({ name: 'ConfigError', message: expect.stringMatching(/authorize/) }));
  });
});
