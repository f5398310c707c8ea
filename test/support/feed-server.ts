import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { publish, type Database, type EventInput, type OutboxEvent } from '@tidings/outbox';
import { pollingFeed, type PollingFeed, type PollingFeedOptions } from '@tidings/relays/polling';
import { AccessDeniedError, sseFeed, type SseFeed, type SseFeedOptions } from '@tidings/relays/sse';
import { websocketFeed, type WebSocketFeed, type WebSocketFeedOptions } from '@tidings/relays/websocket';
import { freshOutbox, inCommitOrder, inTransaction, type TestOutbox } from './db.ts';

/** What a feed server's database handle was asked to do: how the feeds use PostgreSQL. */
export interface DatabaseCounts {
  /** Every statement. */
  queries: number;
  /** Reads of the log (readFeed statements). */
  feedReads: number;
  /** LISTEN subscriptions opened. */
  listens: number;
}

export interface FeedServer {
  readonly outbox: TestOutbox;
  /** http://127.0.0.1:port */
  readonly origin: string;
  readonly sse: SseFeed;
  readonly polling: PollingFeed;
  /** The WebSocket feed, at `${wsOrigin}/ws`. */
  readonly websocket: WebSocketFeed;
  /** ws://127.0.0.1:port */
  readonly wsOrigin: string;
  readonly server: Server;
  readonly counts: DatabaseCounts;
  /** Every request the SSE feed received (headers included), in order. */
  readonly sseRequests: IncomingMessage[];
  /** Every upgrade request the WebSocket feed received, in order. */
  readonly websocketRequests: IncomingMessage[];
  /** Publishes the events in one committed transaction. */
  publish(events: EventInput | readonly EventInput[]): Promise<OutboxEvent[]>;
  close(): Promise<void>;
}

export interface FeedServerOptions {
  readonly sse?: Partial<SseFeedOptions>;
  readonly polling?: Partial<PollingFeedOptions>;
  readonly websocket?: Partial<WebSocketFeedOptions>;
  /** Default: the tenant in the `x-tenant` header (none: every tenant), topics in `x-topics`. */
  readonly authorize?: SseFeedOptions['authorize'];
  /** An HTML page served at `/`, for browser tests. */
  readonly page?: string;
  /** An existing outbox to serve (else a fresh one, closed with the server). */
  readonly outbox?: TestOutbox;
}

/** The default test hook: `x-deny` refuses, `x-tenant` scopes to a tenant, `x-topics` limits topics. */
export const headerAuthorize: SseFeedOptions['authorize'] = (request) => {
  if (request.headers['x-deny'] === '401') throw new AccessDeniedError(401, 'who are you?');
  if (request.headers['x-deny']) return false;
  const tenant = request.headers['x-tenant'];
  const topics = request.headers['x-topics'];
  return {
    ...(typeof tenant === 'string' ? { tenant } : {}),
    ...(typeof topics === 'string' ? { topics: topics.split(',') } : {}),
  };
};

/** An http server on loopback with the SSE feed at `/events`, the polling feed at `/feed` and the WebSocket feed at `/ws`. */
export async function startFeedServer(label: string, options: FeedServerOptions = {}): Promise<FeedServer> {
  const outbox = options.outbox ?? (await freshOutbox(label));
  const counts: DatabaseCounts = { queries: 0, feedReads: 0, listens: 0 };
  const database = countingDatabase(outbox.db, counts);
  const authorize = options.authorize ?? headerAuthorize;
  const sse = sseFeed({ database, schema: outbox.schema, authorize, pollIntervalMs: 500, ...options.sse });
  const polling = pollingFeed({ database, schema: outbox.schema, authorize, pollIntervalMs: 500, ...options.polling });
  const websocket = websocketFeed({ database, schema: outbox.schema, authorize, pollIntervalMs: 500, ...options.websocket });
  const sseRequests: IncomingMessage[] = [];
  const websocketRequests: IncomingMessage[] = [];
  const server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (path === '/events') {
      sseRequests.push(request);
      sse.handle(request, response);
    } else if (path === '/feed') polling.handle(request, response);
    else if (path === '/' && options.page) response.writeHead(200, { 'content-type': 'text/html' }).end(options.page);
    else response.writeHead(404).end();
  });
  server.on('upgrade', (request, socket, head) => {
    if ((request.url ?? '/').split('?')[0] !== '/ws') return void socket.destroy();
    websocketRequests.push(request);
    websocket.handle(request, socket, head);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    outbox,
    origin,
    sse,
    polling,
    websocket,
    wsOrigin: origin.replace('http:', 'ws:'),
    server,
    counts,
    sseRequests,
    websocketRequests,
    publish: async (events) =>
      inCommitOrder(outbox.db, outbox.schema, await inTransaction(outbox.pool, (client) => publish(client, events, { schema: outbox.schema }))),
    async close() {
      await Promise.all([sse.close(), polling.close(), websocket.close()]);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (!options.outbox) await outbox.close();
    },
  };
}

/** The same database, counting statements, log reads and LISTENs (a new identity: a hub of its own). */
export function countingDatabase(db: Database, counts: DatabaseCounts): Database {
  return {
    query(text, params) {
      counts.queries++;
      if (text.includes('retention_horizon')) counts.feedReads++;
      return db.query(text, params);
    },
    transaction: (fn) => db.transaction(fn),
    async listen(channel, onNotify) {
      counts.listens++;
      return db.listen(channel, onNotify);
    },
  } as Database;
}
