import { inbox, migrateInbox } from '@tidings/inbox';
import type { Executor } from '@tidings/outbox';
import { createFaultProxy, openWebSocketFeed } from '@tidings/relays/testing';
import { websocketConsumer, websocketFeed, type FeedConsumer } from '@tidings/relays/websocket';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';

let feed: FeedServer;
let schema: string;

beforeAll(async () => {
  feed = await startFeedServer('websocket_consumer');
  schema = `t_ws_consumer_${randomBytes(4).toString('hex')}`;
  await feed.outbox.db.query(`CREATE SCHEMA "${schema}"`);
  await migrateInbox(feed.outbox.db, { schema });
  await feed.outbox.db.query(`CREATE TABLE "${schema}".effects (seq bigserial PRIMARY KEY, topic text NOT NULL, event_id text NOT NULL)`);
});
afterAll(async () => {
  await feed.outbox.db.query(`DROP SCHEMA "${schema}" CASCADE`);
  await feed.close();
});

/** A consumer of `topic` at `url` that records each event in the effects table, in its transaction. */
function recording(url: string, topic: string, extra: object = {}): FeedConsumer {
  return websocketConsumer({
    url,
    topics: [topic],
    source: topic,
    consumer: `c-${topic}`,
    schema,
    database: feed.outbox.db,
    handler: async (trx: Executor, event) => {
      await trx.query(`INSERT INTO "${schema}".effects (topic, event_id) VALUES ($1, $2)`, [topic, event.eventId]);
    },
    reconnect: { minDelayMs: 20, maxDelayMs: 200 },
    ...extra,
  });
}

async function applied(topic: string): Promise<string[]> {
  const { rows } = await feed.outbox.db.query<{ event_id: string }>(`SELECT event_id FROM "${schema}".effects WHERE topic = $1 ORDER BY seq`, [topic]);
  return rows.map((row) => row.event_id);
}

/** A WebSocket feed over the test outbox on `port` (0: any), that can be stopped and started again on the same port. */
async function standalone(port: number): Promise<{ port: number; readonly connections: number; close(): Promise<void> }> {
  const ws = websocketFeed({ database: feed.outbox.db, schema: feed.outbox.schema, authorize: () => ({}), pollIntervalMs: 500 });
  const server = createServer((_request, response) => response.writeHead(404).end());
  server.on('upgrade', (request, socket, head) => ws.handle(request, socket, head));
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    get connections() {
      return ws.connections;
    },
    async close() {
      await ws.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('the WebSocket consumer', () => {
  it('applies every event once, in order, when its connection is cut while large frames are on the wire', async () => {
    const topic = unique('cut');
    const proxy = await createFaultProxy({ target: { host: '127.0.0.1', port: Number(new URL(feed.origin).port) } });
    let commits = 0;
    const consumer = recording(`ws://127.0.0.1:${proxy.port}/ws`, topic, {
      maxInFlight: 8,
      // Cut after some commits, while the next frames (each 200 KB) are still arriving.
      onEvent: (event: { type: string }) => {
        if (event.type === 'committed' && ++commits % 7 === 3) proxy.cutAll();
      },
    });
    try {
      const published = await feed.publish(Array.from({ length: 40 }, (_, n) => ({ topic, payload: { n, blob: 'x'.repeat(200_000) } })));
      await waitUntil('every event applied', async () => (await applied(topic)).length >= 40);
      expect(await applied(topic)).toEqual(published.map((e) => e.eventId));
      // Cut more than once, and each cut made it connect again (a cut while it still applied what had arrived ends the same connection).
      expect(proxy.acceptedConnections).toBeGreaterThan(2);
    } finally {
      await consumer.close();
      await proxy.close();
    }
  });

  it('resumes from its committed cursor after the feed server restarts, missing nothing and applying nothing twice', async () => {
    const topic = unique('restart');
    let server = await standalone(0);
    const { port } = server;
    const consumer = recording(`ws://127.0.0.1:${port}/ws`, topic);
    try {
      const first = await feed.publish([1, 2, 3].map((n) => ({ topic, payload: n })));
      await waitUntil('the first events applied', async () => (await applied(topic)).length === 3);
      await server.close();
      const second = await feed.publish([4, 5, 6].map((n) => ({ topic, payload: n })));
      server = await standalone(port);
      const third = await feed.publish([7, 8].map((n) => ({ topic, payload: n })));
      await waitUntil('every event applied', async () => (await applied(topic)).length >= 8);
      expect(await applied(topic)).toEqual([...first, ...second, ...third].map((e) => e.eventId));
    } finally {
      await consumer.close();
      await server.close();
    }
  });

  it('waits and retries when the feed refuses it with too-many-connections (4429), and stops on an invalid cursor (4400)', async () => {
    const strict = await startFeedServer('websocket_consumer_strict', { outbox: feed.outbox, websocket: { maxConnectionsPerTenant: 1 } });
    const topic = unique('busy');
    const holder = await openWebSocketFeed(`${strict.wsOrigin}/ws`, null, { 'x-tenant': 'busy' });
    const heard: { type: string; error?: Error }[] = [];
    const consumer = recording(`${strict.wsOrigin}/ws`, topic, { headers: { 'x-tenant': 'busy' }, onEvent: (event: { type: string }) => heard.push(event) });
    try {
      const published = await feed.publish([{ topic, tenant: 'busy', payload: 1 }]);
      await waitUntil('the consumer was refused', () => heard.some((e) => e.type === 'disconnected'));
      expect(heard.find((e) => e.type === 'disconnected')!.error).toMatchObject({ name: 'FeedResponseError', status: 429, reason: 'too-many-connections' });
      holder.close();
      await waitUntil('the event applied once the slot was free', async () => (await applied(topic)).length === 1);
      expect(await applied(topic)).toEqual(published.map((e) => e.eventId));
    } finally {
      holder.close();
      await consumer.close();
      await strict.close();
    }
    const ahead = unique('ahead');
    await feed.outbox.db.transaction((trx) => inbox({ consumer: `c-${ahead}`, schema }).saveCheckpoint(trx, { source: ahead, position: 'c999999999999-0' }));
    const stopped = recording(`${feed.wsOrigin}/ws`, ahead);
    await expect(stopped.done).rejects.toMatchObject({ name: 'InvalidCursorError', cursor: 'c999999999999-0' });
  });

  it('refuses a URL that is not ws:// or wss:// and topics that are not topic patterns with a ConfigError', () => {
    const base = { consumer: 'c', database: feed.outbox.db, handler: () => {} };
    expect(() => websocketConsumer({ ...base, url: 'http://127.0.0.1/ws' })).toThrow(expect.objectContaining({ name: 'ConfigError', message: expect.stringMatching(/url/) }));
    expect(() => websocketConsumer({ ...base, url: 'ws://127.0.0.1/ws', topics: ['a b'] })).toThrow(
      expect.objectContaining({ name: 'ConfigError', message: expect.stringMatching(/topics/) }),
    );
    expect(() => websocketConsumer({ ...base, url: 'ws://127.0.0.1/ws', maxInFlight: 0 })).toThrow(expect.objectContaining({ name: 'ConfigError', message: expect.stringMatching(/maxInFlight/) }));
  });
});

describe('the WebSocket feed, cut off mid-frame by a client', () => {
  it('lets go of a connection whose client vanished halfway through a frame, and serves the next one', async () => {
    const server = await standalone(0);
    const socket = connect(server.port, '127.0.0.1');
    const topic = unique('half');
    const consumer = recording(`ws://127.0.0.1:${server.port}/ws`, topic);
    try {
      await waitUntil('the consumer is connected', () => server.connections === 1);
      const key = randomBytes(16).toString('base64');
      socket.write(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      await new Promise<void>((resolve) => socket.once('data', () => resolve()));
      await waitUntil('the raw client is connected', () => server.connections === 2);
      // A masked text frame announcing 100 bytes, of which only 10 arrive before the client vanishes.
      socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | 100]), randomBytes(4), randomBytes(10)]));
      socket.destroy();
      await waitUntil('the feed let go of the half-sent connection', () => server.connections === 1);
      const published = await feed.publish([1, 2].map((n) => ({ topic, payload: n })));
      await waitUntil('the other connection is still served', async () => (await applied(topic)).length === 2);
      expect(await applied(topic)).toEqual(published.map((e) => e.eventId));
    } finally {
      socket.destroy();
      await consumer.close();
      await server.close();
    }
  });
});

const unique = (name: string): string => `ws.${name}.${randomBytes(3).toString('hex')}`;
