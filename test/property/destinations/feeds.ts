/**
 * The SSE, polling and WebSocket feeds: no relay, the feed reads the log itself. A real node:http server on
 * loopback serves the feed (its database connections through a fault proxy), consumers reach it
 * through a second fault proxy (streams cut, server unreachable), and the consumer helpers apply
 * each event and store its cursor in one transaction. Faults on the consumer side: a crash and
 * restart from the checkpoint, and a second consumer of the same checkpoint racing the first.
 * An arrival is an event handed to a consumer's handler.
 */
import { pgDatabase, type Executor } from '@tidings/outbox';
import { pollingConsumer, pollingFeed, type Consumer } from '@tidings/relays/polling';
import { sseConsumer, sseFeed } from '@tidings/relays/sse';
import { websocketConsumer, websocketFeed } from '@tidings/relays/websocket';
import http from 'node:http';
import pg from 'pg';
import type { AddressInfo } from 'node:net';
import { services } from '../../support/env.ts';
import { createFaultProxy } from '@tidings/relays/testing';
import type { DestinationSpec, RunContext } from '../destination.ts';
import type { Arrival } from '../history.ts';
import { withDeadline } from '../deadline.ts';
import { applyEffect, readEffects } from '../inbox-consumer.ts';
import { postgresProxy } from '../proxies.ts';

type FeedKind = 'sse' | 'polling' | 'websocket';

async function createFeedDestination(kind: FeedKind, context: RunContext) {
  const { schema, topic } = context;
  const feedDb = await postgresProxy();
  const feedDatabase = pgDatabase(feedDb.url, { max: 4 });
  const authorize = () => ({ topics: [topic] });
  const server = http.createServer();
  if (kind === 'websocket') {
    const feed = websocketFeed({ database: feedDatabase, schema, authorize, from: 'start', pollIntervalMs: 200, heartbeatMs: 500, maxInFlight: 10 });
    server.on('upgrade', (req, socket, head) => feed.handle(req, socket, head));
  } else {
    const feed =
      kind === 'sse'
        ? sseFeed({ database: feedDatabase, schema, authorize, from: 'start', pollIntervalMs: 200, heartbeatMs: 500 })
        : pollingFeed({ database: feedDatabase, schema, authorize, pollIntervalMs: 200 });
    server.on('request', (req, res) => feed.handle(req, res));
  }
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxy = await createFaultProxy({ target: { host: '127.0.0.1', port: (server.address() as AddressInfo).port } });

  const consumerDatabase = pgDatabase(services.postgres, { max: 4 });
  const pool = new pg.Pool({ connectionString: services.postgres, max: 2 });
  pool.on('error', () => {});
  const arrivals: Arrival[] = [];
  const errors: string[] = [];
  const start = (): Consumer => {
    const options = {
      url: `http://127.0.0.1:${proxy.port}/${kind}`,
      consumer: 'property',
      schema,
      database: consumerDatabase,
      source: `property-${kind}`,
      retry: { minDelayMs: 50, maxDelayMs: 500 },
      reconnect: { minDelayMs: 50, maxDelayMs: 500 },
      handler: async (trx: Executor, event: { eventId: string; key: string | null; payload: unknown }) => {
        arrivals.push({ eventId: event.eventId, key: event.key });
        await context.swallower.handle(trx, event, () => applyEffect(trx, schema, { eventId: event.eventId, key: event.key }));
      },
    };
    const consumer =
      kind === 'sse'
        ? sseConsumer({ ...options, idleTimeoutMs: 3_000 })
        : kind === 'websocket'
          ? websocketConsumer({ ...options, url: `ws://127.0.0.1:${proxy.port}/ws`, idleTimeoutMs: 3_000, maxInFlight: 5 })
          : pollingConsumer({ ...options, limit: 20, waitSeconds: 2 });
    consumer.done.catch((error: unknown) => errors.push(`the ${kind} consumer stopped for good: ${String(error)}`));
    return consumer;
  };
  let main = start();
  let second: Consumer | undefined;
  const stopping: Promise<void>[] = [];

  return {
    fleet: undefined,
    cutBroker: async () => proxy.cutAll(),
    brokerDown: async () => {
      proxy.refuseNew(true);
      proxy.cutAll();
    },
    brokerUp: async () => proxy.refuseNew(false),
    cutRelayDatabase: async () => feedDb.proxy.cutAll(),
    // A second consumer of the same checkpoint: both receive every event, the checkpoint's
    // compare-and-set lets only one apply each.
    duplicateDelivery: async () => void (second ??= start()),
    // Stopped abruptly and started again: it resumes from the cursor committed with the effects.
    consumerCrash: async () => {
      const crashed = main;
      main = start();
      stopping.push(withDeadline(`close() of a crashed ${kind} consumer`, 10_000, crashed.close()).catch((error: unknown) => void errors.push(String(error))));
    },
    heal: async () => {
      proxy.refuseNew(false);
      await Promise.all(stopping);
    },
    observe: async () => ({ arrivals: [...arrivals], effects: await readEffects(pool, schema) }),
    problems: () => [...errors],
    async close() {
      const stopped = await withDeadline(`close() of the ${kind} consumers`, 10_000, Promise.all([main.close(), second?.close()])).catch((error: Error) => error);
      await proxy.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await feedDb.proxy.close();
      await Promise.all([feedDatabase.close(), consumerDatabase.close(), pool.end()]);
      if (stopped instanceof Error) throw stopped;
    },
  };
}

const feedFaults = ['cut-broker', 'broker-outage', 'cut-relay-db', 'duplicate-delivery', 'consumer-crash'] as const;

export const sseDestination: DestinationSpec = {
  name: 'sse',
  ordered: true,
  ciRuns: 12,
  orderedEffects: true,
  faults: feedFaults,
  create: (context) => createFeedDestination('sse', context),
};

export const pollingDestination: DestinationSpec = {
  name: 'polling',
  ordered: true,
  ciRuns: 12,
  orderedEffects: true,
  faults: feedFaults,
  create: (context) => createFeedDestination('polling', context),
};

export const websocketDestination: DestinationSpec = {
  name: 'websocket',
  ordered: true,
  ciRuns: 12,
  orderedEffects: true,
  faults: feedFaults,
  create: (context) => createFeedDestination('websocket', context),
};
