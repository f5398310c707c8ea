import { encodePosition, type Position } from '@tidings/outbox';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeedEvent, SseFeedOptions } from '@tidings/relays/sse';
import { pollFeed, pollFeedAll } from '@tidings/relays/testing';
import { headerAuthorize, startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';

let feed: FeedServer;
const unique = (name: string): string => `${name}.${randomBytes(3).toString('hex')}`;
const cursorOf = (event: { position: Position }): string => encodePosition(event.position);

beforeAll(async () => {
  feed = await startFeedServer('polling', { polling: { maxLimit: 50, maxWaitSeconds: 5 } });
});
afterAll(async () => {
  await feed.close();
});

describe('the polling feed', () => {
  it('answers oldest-first pages of the requested size with an opaque next cursor and hasMore', async () => {
    const topic = unique('pages');
    const published = await feed.publish(Array.from({ length: 7 }, (_, n) => ({ topic, key: `k${n % 2}`, payload: { n } })));
    const first = await pollFeed(feed.origin, { after: 'start', limit: 3, topics: topic });
    expect(first.status).toBe(200);
    expect(first.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(first.headers.get('cache-control')).toBe('no-cache');
    expect(first.body.events.map((e) => e.eventId)).toEqual(published.slice(0, 3).map((e) => e.eventId));
    expect(first.body).toMatchObject({ next: cursorOf(published[2]!), hasMore: true });
    expect(first.body.events[0]).toEqual({
      cursor: cursorOf(published[0]!),
      eventId: published[0]!.eventId,
      topic,
      key: 'k0',
      tenant: null,
      payload: { n: 0 },
      headers: {},
      createdAt: published[0]!.createdAt.toISOString(),
    });
    const all = await pollFeedAll(feed.origin, 'start', 3, { 'x-topics': topic });
    expect(all.events.map((e) => e.payload)).toEqual(published.map((e) => e.payload));
    const last = await pollFeed(feed.origin, { after: all.next, topics: topic });
    expect(last.body).toMatchObject({ events: [], hasMore: false });
  });

  it('answers 304 to a request whose If-None-Match names the page it would get, and 200 once the page changed', async () => {
    const topic = unique('etag');
    const [event] = await feed.publish({ topic, payload: 1 });
    const query = { after: 'start', topics: topic };
    const first = await pollFeed(feed.origin, query);
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^W\/"[\w-]+"$/);
    const again = await pollFeed(feed.origin, query, { 'if-none-match': etag });
    expect(again.status).toBe(304);
    expect(again.headers.get('etag')).toBe(etag);
    await feed.publish({ topic, payload: 2 });
    const changed = await pollFeed(feed.origin, query, { 'if-none-match': etag.slice(2) });
    expect(changed.status).toBe(200);
    expect(changed.body.events.map((e) => e.eventId)[0]).toBe(event!.eventId);
    expect(changed.body.events).toHaveLength(2);
  });

  it('holds an empty page with ?wait= until the first events commit, and answers an empty page when the wait is over', async () => {
    const topic = unique('long');
    const { body: start } = await pollFeed(feed.origin, { after: 'now', topics: topic });
    const started = Date.now();
    const waiting = pollFeed(feed.origin, { after: start.next, topics: topic, wait: 5 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const published = await feed.publish([{ topic, payload: 'a' }, { topic, payload: 'b' }]);
    const answer = await waiting;
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(answer.body.events.map((e) => e.eventId)).toEqual(published.map((e) => e.eventId));
    expect(answer.body.hasMore).toBe(false);

    const quiet = Date.now();
    const timedOut = await pollFeed(feed.origin, { after: answer.body.next, topics: topic, wait: 1 });
    expect(Date.now() - quiet).toBeGreaterThanOrEqual(950);
    expect(timedOut.status).toBe(200);
    expect(timedOut.body.events).toEqual([]);
  });

  it('splits what a long poll wakes up to by the limit, and says more is waiting', async () => {
    const topic = unique('split');
    const { body: start } = await pollFeed(feed.origin, { after: 'now', topics: topic });
    const waiting = pollFeed(feed.origin, { after: start.next, topics: topic, wait: 5, limit: 2 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const published = await feed.publish([1, 2, 3].map((n) => ({ topic, payload: n })));
    const answer = await waiting;
    expect(answer.body.events.map((e) => e.payload)).toEqual([1, 2]);
    expect(answer.body).toMatchObject({ hasMore: true, next: cursorOf(published[1]!) });
    const rest = await pollFeed(feed.origin, { after: answer.body.next, topics: topic });
    expect(rest.body.events.map((e) => e.payload)).toEqual([3]);
  });

  it("scopes pages to the caller's tenant and allowed topics, and refuses what the hook refuses", async () => {
    const topic = unique('scoped');
    await feed.publish([
      { topic, tenant: 'acme', payload: 'a' },
      { topic, tenant: 'globex', payload: 'g' },
      { topic: `${topic}.secret`, tenant: 'acme', payload: 's' },
    ]);
    const acme = await pollFeedAll(feed.origin, 'start', 10, { 'x-tenant': 'acme', 'x-topics': topic });
    expect(acme.events.map((e) => e.payload)).toEqual(['a']);
    const refusedTopic = await pollFeed(feed.origin, { after: 'start', topics: `${topic}.secret` }, { 'x-topics': topic });
    expect(refusedTopic.status).toBe(403);
    expect((await pollFeed(feed.origin, {}, { 'x-deny': 'yes' })).body).toMatchObject({ error: 'forbidden' });
    expect((await pollFeed(feed.origin, {}, { 'x-deny': '401' })).status).toBe(401);
  });

  it('answers 400 for a malformed cursor, limit, wait or topic list, and 410 for an expired cursor', async () => {
    const malformed = await pollFeed(feed.origin, { after: '12-x' });
    expect(malformed.status).toBe(400);
    expect(malformed.body).toMatchObject({ error: 'invalid-cursor', cursor: '12-x' });
    const bad: Record<string, string | number>[] = [{ limit: 0 }, { limit: 51 }, { limit: 'ten' }, { wait: 6 }, { topics: 'bad topic' }];
    for (const query of bad) {
      const answer = await pollFeed(feed.origin, query);
      expect(answer.status, JSON.stringify(query)).toBe(400);
      expect(answer.body.error).toBe('invalid-request');
    }
    const [old, kept] = await feed.publish([{ topic: unique('expired'), payload: 1 }, { topic: 'x', payload: 2 }]);
    const { schema } = feed.outbox;
    await feed.outbox.db.query(`INSERT INTO "${schema}".retention_horizon (partition, seq, id) VALUES (0, $1, $2)`, [
      kept!.position.seq,
      kept!.position.id,
    ]);
    try {
      const expired = await pollFeed(feed.origin, { after: cursorOf(old!) });
      expect(expired.status).toBe(410);
      expect(expired.body).toMatchObject({ error: 'cursor-expired', cursor: cursorOf(old!) });
    } finally {
      await feed.outbox.db.query(`DELETE FROM "${schema}".retention_horizon`);
    }
  });

  it('answers 405 to a method other than GET', async () => {
    expect((await fetch(`${feed.origin}/feed`, { method: 'DELETE' })).status).toBe(405);
  });
});

describe('the feeds’ observer', () => {
  it('answers the same, the failing request a 503 and the next its events, when onEvent throws', async () => {
    const heard: string[] = [];
    const onEvent = (event: FeedEvent) => {
      heard.push(event.error.message);
      throw new Error('observer bug');
    };
    const failing: SseFeedOptions['authorize'] = (request) => {
      if (request.headers['x-fail']) throw new Error('the token service is down');
      return headerAuthorize(request);
    };
    const server = await startFeedServer('feed_observer', { authorize: failing, polling: { onEvent }, sse: { onEvent } });
    try {
      const topic = unique('observed');
      await server.publish([{ topic, payload: 1 }, { topic, payload: 2 }]);
      expect((await pollFeed(server.origin, { after: 'start', topics: topic }, { 'x-fail': '1' })).status).toBe(503);
      const sse = await fetch(new URL('/events?after=start', server.origin), { headers: { 'x-fail': '1' } });
      expect(sse.status).toBe(503);
      await sse.body?.cancel();
      expect(heard).toEqual(['the token service is down', 'the token service is down']);
      const answer = await pollFeed(server.origin, { after: 'start', topics: topic });
      expect(answer.status).toBe(200);
      expect(answer.body.events.map((e) => e.payload)).toEqual([1, 2]);
    } finally {
      await server.close();
    }
  });
});
