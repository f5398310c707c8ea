import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, type Browser } from '../../../test/support/feed-browser.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';
import { waitUntil } from '../../../test/support/check.ts';

// The page a person would write: the browser's own WebSocket and the documented protocol, nothing of tidings.
const page = `<!doctype html><meta charset="utf-8"><title>feed</title><script>
  window.received = []; window.subscribes = []; window.opens = 0; window.closes = [];
  let acked = null;
  function connect() {
    const socket = new WebSocket('ws://' + location.host + '/ws');
    socket.onopen = () => {
      window.opens++;
      const after = acked ?? 'start';
      window.subscribes.push(after);
      socket.send(JSON.stringify({ type: 'subscribe', after, topics: ['browser.*'], maxInFlight: 3 }));
    };
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.type !== 'event') return;
      window.received.push({ cursor: data.cursor, topic: data.event.topic, eventId: data.event.eventId, n: data.event.payload.n });
      acked = data.cursor;
      socket.send(JSON.stringify({ type: 'ack', cursor: data.cursor }));
    };
    socket.onclose = (event) => {
      window.closes.push(event.code);
      setTimeout(connect, 100);
    };
  }
  connect();
</script>`;

interface Received {
  cursor: string;
  topic: string;
  eventId: string;
  n: number;
}

let feed: FeedServer;
let browser: Browser;

beforeAll(async () => {
  feed = await startFeedServer('websocket_browser', { page, websocket: { heartbeatMs: 200 } });
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await feed?.close();
});

describe("a browser's own WebSocket", () => {
  it('receives and acknowledges events past its credit, is cut off, resubscribes after its last acknowledged cursor and misses nothing', async () => {
    const publish = (from: number, count: number) =>
      feed.publish(Array.from({ length: count }, (_, i) => ({ topic: i % 2 ? 'browser.updated' : 'browser.created', key: 'doc', payload: { n: from + i } })));
    // More than the 3 in flight it asked for: only its acks let the rest through.
    const committed = await publish(0, 7);
    const tab = await browser.open(`${feed.origin}/`);
    const received = (): Promise<Received[]> => tab.evaluate<Received[]>('window.received');
    await waitUntil('the browser received the first 7 events', async () => (await received()).length >= 7);
    committed.push(...(await publish(7, 3)));
    await waitUntil('the browser received 10 events live', async () => (await received()).length >= 10);

    // The connection drops; events commit while the browser is away.
    const first = feed.websocketRequests.at(-1)!;
    first.socket.destroy();
    committed.push(...(await publish(10, 4)));
    await waitUntil('the browser resubscribed and caught up', async () => (await received()).length >= 14);
    committed.push(...(await publish(14, 2)));
    await waitUntil('the browser received events after resubscribing', async () => (await received()).length >= 16);

    const events = await received();
    expect(events.map((e) => e.eventId)).toEqual(committed.map((e) => e.eventId));
    expect(events.map((e) => e.topic)).toEqual(committed.map((e) => e.topic));
    expect(await tab.evaluate<string[]>('window.subscribes')).toEqual(['start', events[9]!.cursor]);
    expect(await tab.evaluate<number>('window.opens')).toBe(2);
    expect(feed.websocketRequests).toHaveLength(2);
  });
});
