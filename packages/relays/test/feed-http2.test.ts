import { connect, createServer, type ClientHttp2Session, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { SseParser, type SseMessage } from '@tidings/relays/sse';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';

let feed: FeedServer;
let h2: Http2Server;
let origin: string;
const unique = (name: string): string => `${name}.${randomBytes(3).toString('hex')}`;

beforeAll(async () => {
  feed = await startFeedServer('http2');
  h2 = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    const handle = path === '/events' ? feed.sse.handle : feed.polling.handle;
    handle(request, response);
  });
  await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(h2.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => h2.close(() => resolve()));
  await feed.close();
});

/** One SSE stream on `session`: its status and the messages it received. */
function stream(session: ClientHttp2Session, path: string) {
  const messages: SseMessage[] = [];
  const request = session.request({ ':path': path, accept: 'text/event-stream' });
  const parser = new SseParser((message) => messages.push(message));
  let status = 0;
  request.on('response', (headers) => (status = Number(headers[':status'])));
  request.setEncoding('utf8').on('data', (chunk: string) => parser.push(chunk));
  return { messages, request, status: () => status };
}

describe('the SSE and polling feeds over HTTP/2 (h2c)', () => {
  it('serves many SSE streams and polls on one connection', async () => {
    const session = connect(origin);
    try {
      const topics = Array.from({ length: 5 }, (_, i) => unique(`h2.${i}`));
      const streams = topics.map((t) => stream(session, `/events?after=now&topics=${t}`));
      await waitUntil('every stream is open', () => streams.every((s) => s.status() === 200) && feed.sse.connections >= 5);
      const published = await feed.publish(topics.flatMap((topic) => [1, 2].map((n) => ({ topic, payload: n }))));
      await waitUntil('every stream received its two events', () => streams.every((s) => s.messages.length >= 2));
      for (const [i, s] of streams.entries()) {
        expect(s.messages.map((m) => JSON.parse(m.data).eventId)).toEqual(published.filter((e) => e.topic === topics[i]).map((e) => e.eventId));
      }
      for (const s of streams) s.request.close();
    } finally {
      session.close();
    }
  });
});
