import { createServer, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { FeedServer } from './feed-server.ts';

export interface H2cFeedServer {
  /** http://127.0.0.1:port, spoken as cleartext HTTP/2 (h2c). */
  readonly origin: string;
  /** Sessions (connections) accepted so far, open or not. */
  readonly sessionsAccepted: () => number;
  /** Destroys every open session, then stops listening. */
  close(): Promise<void>;
}

/** node:http2's compatibility API on loopback over `feed`'s SSE (`/events`) and polling (`/feed`) handlers. */
export async function startH2cFeedServer(feed: FeedServer): Promise<H2cFeedServer> {
  const sessions = new Set<ServerHttp2Session>();
  let accepted = 0;
  const server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    (path === '/events' ? feed.sse.handle : feed.polling.handle)(request, response);
  });
  server.on('session', (session) => {
    accepted++;
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    sessionsAccepted: () => accepted,
    async close() {
      for (const session of sessions) session.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
