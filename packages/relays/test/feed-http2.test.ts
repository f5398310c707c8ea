import { connect, constants, type ClientHttp2Session } from 'node:http2';
import { randomBytes } from 'node:crypto';
import { SseParser, type SseMessage } from '@tidings/relays/sse';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { startH2cFeedServer, type H2cFeedServer } from '../../../test/support/feed-h2c-server.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';

let feed: FeedServer;
let h2: H2cFeedServer;
let origin: string;
const unique = (name: string): string => `${name}.${randomBytes(3).toString('hex')}`;

beforeAll(async () => {
  feed = await startFeedServer('http2');
  h2 = await startH2cFeedServer(feed);
  origin = h2.origin;
});
afterAll(async () => {
  await h2?.close();
  await feed?.close();
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
  it('serves many SSE streams and long polls on one connection, each with its own events', async () => {
    const session = connect(origin);
    const sessionsBefore = h2.sessionsAccepted();
    try {
      const topics = Array.from({ length: 5 }, (_, i) => unique(`h2.${i}`));
      const streams = topics.map((t) => stream(session, `/events?after=now&topics=${t}`));
      await waitUntil('every stream is open', () => streams.every((s) => s.status() === 200));
      const polled = poll(session, `/feed?after=now&wait=20&topics=${topics[0]}`);
      const published = await feed.publish(topics.flatMap((topic) => [1, 2].map((n) => ({ topic, payload: n }))));
      await waitUntil('every stream received its two events', () => streams.every((s) => s.messages.length >= 2));
      for (const [i, s] of streams.entries()) {
        expect(s.messages.map((m) => JSON.parse(m.data).eventId)).toEqual(published.filter((e) => e.topic === topics[i]).map((e) => e.eventId));
      }
      const page = await polled;
      expect(page.status).toBe(200);
      expect(page.body.events.map((e: { eventId: string }) => e.eventId)).toEqual(published.filter((e) => e.topic === topics[0]).map((e) => e.eventId));
      expect(h2.sessionsAccepted() - sessionsBefore).toBe(1);
    } finally {
      session.destroy();
    }
  });

  it('frees a stream the client resets, and refuses a bad cursor with 400 and a feed-error frame', async () => {
    const session = connect(origin);
    try {
      await waitUntil('the streams of earlier tests are gone', () => feed.sse.connections === 0);
      const s = stream(session, `/events?after=now&topics=${unique('reset')}`);
      await waitUntil('the stream is open', () => s.status() === 200 && feed.sse.connections === 1);
      s.request.close(constants.NGHTTP2_CANCEL);
      await waitUntil('the feed let go of the reset stream', () => feed.sse.connections === 0);

      const bad = stream(session, '/events?after=not-a-cursor');
      await waitUntil('the refusal arrived', () => bad.messages.length === 1);
      expect(bad.status()).toBe(400);
      expect(bad.messages[0]!.event).toBe('feed-error');
      expect(JSON.parse(bad.messages[0]!.data)).toMatchObject({ error: 'invalid-cursor', cursor: 'not-a-cursor' });
    } finally {
      session.destroy();
    }
  });
});

/** One GET on `session`, its body parsed as JSON. */
function poll(session: ClientHttp2Session, path: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const request = session.request({ ':path': path, accept: 'application/json' });
    let status = 0;
    let text = '';
    request.on('response', (headers) => (status = Number(headers[':status'])));
    request.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    request.on('end', () => resolve({ status, body: JSON.parse(text) }));
    request.on('error', reject);
  });
}
