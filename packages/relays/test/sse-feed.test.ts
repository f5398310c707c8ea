import { encodePosition } from '@tidings/outbox';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSse, type SseReader } from '@tidings/relays/testing';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';

let feed: FeedServer;
const readers: SseReader[] = [];
const unique = (name: string): string => `${name}.${randomBytes(3).toString('hex')}`;

async function open(query = '', headers: Record<string, string> = {}): Promise<SseReader> {
  const reader = await openSse(`${feed.origin}/events${query}`, headers);
  readers.push(reader);
  return reader;
}

beforeAll(async () => {
  feed = await startFeedServer('sse', { sse: { retryMs: 1_234 } });
});
afterAll(async () => {
  for (const reader of readers) reader.close();
  await feed.close();
});

describe('the SSE feed', () => {
  it('streams committed events with the cursor as id, the topic as event type and the JSON envelope as data', async () => {
    const topic = unique('orders.created');
    const reader = await open(`?topics=${topic}`);
    expect(reader.status).toBe(200);
    expect(reader.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(reader.headers['cache-control']).toMatch(/^no-cache\b/);
    expect(reader.headers['x-accel-buffering']).toBe('no');
    const published = await feed.publish([
      { topic, key: 'k1', payload: { n: 1, text: 'line\nbreak ✓' }, headers: { traceparent: '00-abc-def-01' } },
      { topic, key: null, payload: [1, 2, 3] },
    ]);
    await reader.waitFor(2);
    expect(reader.retry).toBe(1_234);
    expect(reader.messages.map((m) => m.event)).toEqual([topic, topic]);
    expect(reader.messages.map((m) => m.lastEventId)).toEqual(reader.events.map((e) => e.cursor));
    expect(reader.events).toEqual(
      published.map((event) => ({
        cursor: encodePosition(event.position),
        eventId: event.eventId,
        topic,
        key: event.key,
        tenant: null,
        payload: event.payload,
        headers: event.headers,
        createdAt: event.createdAt.toISOString(),
      })),
    );
  });

  it('starts from now by default, from the oldest event with ?after=start, and after a cursor with ?after=', async () => {
    const topic = unique('history');
    const before = await feed.publish([1, 2, 3].map((n) => ({ topic, payload: n })));
    const live = await open(`?topics=${topic}`);
    const all = await open(`?topics=${topic}&after=start`);
    const later = await open(`?topics=${topic}&after=${encodePosition(before[0]!.position)}`);
    const after = await feed.publish({ topic, payload: 4 });
    await all.waitFor(4);
    await later.waitFor(3);
    await live.waitFor(1);
    expect(live.events.map((e) => e.eventId)).toEqual([after[0]!.eventId]);
    expect(all.events.map((e) => e.payload)).toEqual([1, 2, 3, 4]);
    expect(later.events.map((e) => e.payload)).toEqual([2, 3, 4]);
  });

  it('resumes after the Last-Event-ID header, which wins over the ?after= of the URL EventSource reconnects to', async () => {
    const topic = unique('resume');
    await feed.publish([1, 2, 3, 4].map((n) => ({ topic, payload: n })));
    const first = await open(`?topics=${topic}&after=start`);
    await first.waitFor(4);
    const resumed = await open(`?topics=${topic}&after=start`, { 'last-event-id': first.events[1]!.cursor });
    await resumed.waitFor(2);
    await sleep(100);
    expect(resumed.events.map((e) => e.payload)).toEqual([3, 4]);
  });

  it('sends a heartbeat comment on every stream at the configured interval', async () => {
    const quick = await startFeedServer('sse_heartbeat', { sse: { heartbeatMs: 100 } });
    try {
      const reader = await openSse(`${quick.origin}/events`);
      await sleep(450);
      expect(reader.raw.match(/^: keep-alive$/gm)?.length).toBeGreaterThanOrEqual(3);
      expect(reader.messages).toEqual([]);
      reader.close();
    } finally {
      await quick.close();
    }
  });

  it('narrows ?topics= to the topics the hook allows, and refuses topics it does not allow', async () => {
    const prefix = unique('shop');
    const reader = await open(`?topics=${prefix}.*`, { 'x-topics': `${prefix}.orders.*,${prefix}.invoices.paid` });
    await feed.publish(['orders.created', 'invoices.paid', 'invoices.void', 'carts.emptied'].map((t) => ({ topic: `${prefix}.${t}`, payload: t })));
    await reader.waitFor(2);
    await sleep(100);
    expect(reader.events.map((e) => e.payload)).toEqual(['orders.created', 'invoices.paid']);
    const refused = await open(`?topics=${prefix}.carts.*`, { 'x-topics': `${prefix}.orders.*` });
    await refused.ended;
    expect(refused.status).toBe(403);
    expect(refused.messages[0]?.event).toBe('feed-error');
    expect(JSON.parse(refused.messages[0]!.data)).toMatchObject({ error: 'forbidden' });
  });

  it("never shows a caller another tenant's events, while an unscoped caller sees them all", async () => {
    const topic = unique('tenanted');
    const acme = await open(`?topics=${topic}`, { 'x-tenant': 'acme' });
    const globex = await open(`?topics=${topic}`, { 'x-tenant': 'globex' });
    const everyone = await open(`?topics=${topic}`);
    await feed.publish([
      { topic, tenant: 'acme', payload: 'a1' },
      { topic, tenant: 'globex', payload: 'g1' },
      { topic, payload: 'none' },
      { topic, tenant: 'acme', payload: 'a2' },
    ]);
    await Promise.all([acme.waitFor(2), globex.waitFor(1), everyone.waitFor(4)]);
    await sleep(100);
    expect(acme.events.map((e) => e.payload)).toEqual(['a1', 'a2']);
    expect(globex.events.map((e) => e.payload)).toEqual(['g1']);
    expect(everyone.events.map((e) => e.payload)).toEqual(['a1', 'g1', 'none', 'a2']);
  });

  it('answers 403 when the hook returns false and 401 when it throws AccessDeniedError(401)', async () => {
    const forbidden = await open('', { 'x-deny': 'yes' });
    const unauthorized = await open('', { 'x-deny': '401' });
    await Promise.all([forbidden.ended, unauthorized.ended]);
    expect(forbidden.status).toBe(403);
    expect(unauthorized.status).toBe(401);
    expect(unauthorized.headers['www-authenticate']).toBe('Bearer');
    expect(JSON.parse(unauthorized.messages[0]!.data)).toEqual({
      type: 'urn:tidings:problem:unauthorized',
      title: 'Authentication is required',
      status: 401,
      detail: 'who are you?',
      error: 'unauthorized',
      message: 'who are you?',
    });
  });

  it('answers a malformed cursor with 400 and an expired one with 410, each with a feed-error frame saying why', async () => {
    const malformed = await open('', { 'last-event-id': 'not-a-cursor' });
    await malformed.ended;
    expect(malformed.status).toBe(400);
    expect(JSON.parse(malformed.messages[0]!.data)).toMatchObject({ error: 'invalid-cursor', cursor: 'not-a-cursor' });

    const topic = unique('expiring');
    const [old, kept] = await feed.publish([{ topic, payload: 1 }, { topic, payload: 2 }]);
    const { schema } = feed.outbox;
    await feed.outbox.db.query(
      `INSERT INTO "${schema}".retention_horizon (partition, seq, id) VALUES (0, $1, $2)
       ON CONFLICT (partition) DO UPDATE SET seq = EXCLUDED.seq, id = EXCLUDED.id`,
      [kept!.position.seq, kept!.position.id],
    );
    try {
      const expired = await open(`?after=${encodePosition(old!.position)}`);
      await expired.ended;
      expect(expired.status).toBe(410);
      expect(expired.messages.map((m) => m.event)).toEqual(['feed-error']);
      expect(JSON.parse(expired.messages[0]!.data)).toMatchObject({ error: 'cursor-expired', message: expect.stringMatching(/retention/) });
    } finally {
      await feed.outbox.db.query(`DELETE FROM "${schema}".retention_horizon`);
    }
  });

  it('answers 405 to a method other than GET', async () => {
    const response = await fetch(`${feed.origin}/events`, { method: 'POST' });
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('GET');
  });
});
