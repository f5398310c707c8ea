import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { startH2cFeedServer, type H2cFeedServer } from '../../../test/support/feed-h2c-server.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';

let feed: FeedServer;
let h2: H2cFeedServer;
let origin: string;

beforeAll(async () => {
  feed = await startFeedServer('http2_limits', { sse: { maxConnectionsPerTenant: 2 }, polling: { maxConnectionsPerTenant: 1 } });
  h2 = await startH2cFeedServer(feed);
  origin = h2.origin;
});
afterAll(async () => {
  await h2?.close();
  await feed?.close();
});

interface Exchange {
  readonly request: ClientHttp2Stream;
  /** 0 until the answer's headers came. */
  status(): number;
  /** Resolves with the whole body once the answer ended. */
  readonly body: Promise<string>;
}

/** One request of tenant `tenant` on `session`. */
function open(session: ClientHttp2Session, path: string, tenant: string): Exchange {
  let status = 0;
  let text = '';
  const request = session.request({ ':path': path, 'x-tenant': tenant, accept: path.startsWith('/events') ? 'text/event-stream' : 'application/json' });
  request.on('response', (headers) => (status = Number(headers[':status'])));
  request.on('error', () => {}); // a stream reset by either side
  request.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
  const body = new Promise<string>((resolve) => request.once('end', () => resolve(text)));
  return { request, status: () => status, body };
}

/** Resolves once the answer's headers came, with its status. */
async function answered(stream: Exchange): Promise<number> {
  await waitUntil('the request was answered', () => stream.status() !== 0);
  return stream.status();
}

describe('connection limits over HTTP/2, where one connection carries many streams', () => {
  it('count each SSE stream of a session, and free a slot when a stream is reset or the peer ends the session with an error GOAWAY', async () => {
    const session = connect(origin);
    session.on('error', () => {});
    const a = open(session, '/events?after=now', 'h2-tenant');
    const b = open(session, '/events?after=now', 'h2-tenant');
    expect([await answered(a), await answered(b)]).toEqual([200, 200]);
    expect(await answered(open(session, '/events?after=now', 'h2-tenant'))).toBe(429);
    expect(await answered(open(session, '/events?after=now', 'h2-other'))).toBe(200);

    a.request.close(constants.NGHTTP2_CANCEL);
    await waitUntil('the feed let go of the reset stream', () => feed.sse.connections === 2);
    expect(await answered(open(session, '/events?after=now', 'h2-tenant'))).toBe(200);

    // The peer sends GOAWAY with an error and leaves its TCP connection open: the server drops the
    // session, and with it every stream's slot.
    session.goaway(constants.NGHTTP2_PROTOCOL_ERROR);
    await waitUntil('the feed let go of every stream of the session', () => feed.sse.connections === 0);
    session.destroy();
    const fresh = connect(origin);
    try {
      const again = [open(fresh, '/events?after=now', 'h2-tenant'), open(fresh, '/events?after=now', 'h2-tenant')];
      expect([await answered(again[0]!), await answered(again[1]!)]).toEqual([200, 200]);
    } finally {
      fresh.destroy();
    }
  });

  it('count each long poll of a session, and free its slot when the stream is reset', async () => {
    const session = connect(origin);
    try {
      const topic = `h2.poll.${Date.now()}`;
      const first = open(session, `/feed?after=now&wait=30&topics=${topic}`, 'h2-poller');
      await waitUntil('the long poll waits', () => feed.polling.waiting === 1);
      expect(await answered(open(session, `/feed?after=now&wait=30&topics=${topic}`, 'h2-poller'))).toBe(429);
      // A plain poll (no wait) needs no slot.
      expect(await answered(open(session, `/feed?after=now&topics=${topic}`, 'h2-poller'))).toBe(200);

      first.request.close(constants.NGHTTP2_CANCEL);
      await waitUntil('the feed let go of the reset long poll', () => feed.polling.waiting === 0);
      const next = open(session, `/feed?after=now&wait=30&topics=${topic}`, 'h2-poller');
      await waitUntil('the next long poll waits', () => feed.polling.waiting === 1);
      const [event] = await feed.publish({ topic, tenant: 'h2-poller', payload: 1 });
      expect(await answered(next)).toBe(200);
      expect(JSON.parse(await next.body).events.map((e: { eventId: string }) => e.eventId)).toEqual([event!.eventId]);
    } finally {
      session.destroy();
    }
  });
});
