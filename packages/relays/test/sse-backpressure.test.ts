import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSse } from '@tidings/relays/testing';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';
import { waitUntil } from '../../../test/support/check.ts';

let feed: FeedServer;

beforeAll(async () => {
  feed = await startFeedServer('sse_slow', { sse: { drainTimeoutMs: 500, batchSize: 200 } });
});
afterAll(async () => {
  await feed.close();
});

describe('SSE back-pressure', () => {
  it('disconnects a client that stops reading, buffers at most about one batch for it, and the client resumes without a gap', async () => {
    const topic = 'slow.events';
    const body = 'x'.repeat(4_000);
    const published = [];
    for (let batch = 0; batch < 6; batch++) {
      published.push(...(await feed.publish(Array.from({ length: 500 }, (_, i) => ({ topic, payload: { n: batch * 500 + i, body } })))));
    }
    const totalBytes = published.length * body.length;

    let maxBuffered = 0;
    let response: ServerResponse | undefined;
    feed.server.prependListener('request', (_request, res) => (response ??= res));
    const sampler = setInterval(() => (maxBuffered = Math.max(maxBuffered, response?.writableLength ?? 0)), 2);
    const slow = await openSse(`${feed.origin}/events?after=start&topics=${topic}`);
    slow.response.pause(); // stop reading: the socket fills up and write() starts returning false
    try {
      await waitUntil('the server cut the slow client off', async () => feed.sse.connections === 0, 15_000);
    } finally {
      clearInterval(sampler);
    }
    slow.response.resume();
    await slow.ended;
    const received = slow.events.length;
    console.info(`slow client: got ${received} of ${published.length} events before the cut; server buffered at most ${maxBuffered} bytes for it`);
    expect(received).toBeLessThan(published.length);
    expect(maxBuffered).toBeLessThan(2 * 200 * 4_200);
    expect(maxBuffered).toBeLessThan(totalBytes / 5);
    expect(slow.events.map((e) => e.eventId)).toEqual(published.slice(0, received).map((e) => e.eventId));

    const resumed = await openSse(`${feed.origin}/events?topics=${topic}`, { 'last-event-id': slow.messages.at(-1)!.lastEventId });
    await resumed.waitFor(published.length - received, 30_000);
    const all = [...slow.events, ...resumed.events].map((e) => e.eventId);
    expect(all).toEqual(published.map((e) => e.eventId));
    resumed.close();
  });
});
