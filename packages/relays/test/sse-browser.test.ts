import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, type Browser } from '../../../test/support/feed-browser.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';
import { waitUntil } from '../../../test/support/check.ts';

// The page a person would open: the browser's own EventSource, nothing of tidings.
const page = `<!doctype html><meta charset="utf-8"><title>feed</title><script>
  window.received = []; window.opens = 0; window.errors = 0;
  const source = new EventSource('/events?after=start&topics=browser.*');
  source.onopen = () => window.opens++;
  source.onerror = () => window.errors++;
  for (const type of ['browser.created', 'browser.updated']) {
    source.addEventListener(type, (e) => window.received.push({ id: e.lastEventId, type: e.type, data: JSON.parse(e.data) }));
  }
</script>`;

interface Received {
  id: string;
  type: string;
  data: { eventId: string; cursor: string; payload: { n: number } };
}

let feed: FeedServer;
let browser: Browser;

beforeAll(async () => {
  feed = await startFeedServer('sse_browser', { page, sse: { retryMs: 500 } });
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await feed?.close();
});

describe("a browser's own EventSource", () => {
  it('receives events, is disconnected by the server, reconnects with Last-Event-ID and misses nothing', async () => {
    const publish = (from: number, count: number) =>
      feed.publish(Array.from({ length: count }, (_, i) => ({ topic: i % 2 ? 'browser.updated' : 'browser.created', key: 'doc', payload: { n: from + i } })));
    const committed = await publish(0, 5);
    const tab = await browser.open(`${feed.origin}/`);
    const received = (): Promise<Received[]> => tab.evaluate<Received[]>('window.received');
    await waitUntil('the browser received the first 5 events', async () => (await received()).length >= 5);
    committed.push(...(await publish(5, 3)));
    await waitUntil('the browser received 8 events live', async () => (await received()).length >= 8);

    // The server drops the stream; events commit while the browser is away.
    const firstStream = feed.sseRequests.at(-1)!;
    firstStream.socket.destroy();
    committed.push(...(await publish(8, 4)));
    await waitUntil('the browser reconnected and caught up', async () => (await received()).length >= 12);
    committed.push(...(await publish(12, 2)));
    await waitUntil('the browser received events after reconnecting', async () => (await received()).length >= 14);

    const events = await received();
    expect(events.map((e) => e.data.eventId)).toEqual(committed.map((e) => e.eventId));
    expect(events.map((e) => e.type)).toEqual(committed.map((e) => e.topic));
    expect(events.map((e) => e.id)).toEqual(events.map((e) => e.data.cursor));
    expect(feed.sseRequests).toHaveLength(2);
    expect(firstStream.headers['last-event-id']).toBeUndefined();
    expect(feed.sseRequests[1]!.headers['last-event-id']).toBe(events[7]!.id);
    expect(await tab.evaluate<number>('window.opens')).toBe(2);
  });
});
