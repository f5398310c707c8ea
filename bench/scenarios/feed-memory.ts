import http from 'node:http';
import type { AddressInfo } from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Worker } from 'node:worker_threads';
import { publish } from '@tidings/outbox';
import { sseFeed } from '@tidings/relays/sse';
import { websocketFeed } from '@tidings/relays/websocket';
import { benchOutbox, format, progress, topic, waitFor } from '../support.ts';

export interface FeedMemoryPlan {
  /** Connections held open to each feed. */
  readonly connections: number;
}

export interface FeedMemoryResult {
  readonly sse_heap_kib_per_connection: number;
  readonly websocket_heap_kib_per_connection: number;
}

v8.setFlagsFromString('--expose-gc');
/** A full collection, so heap figures count what is held, not what waits to be collected. */
const gc = vm.runInNewContext('gc') as () => void;

/**
 * The clients run in a worker thread: a heap of their own, so the server's heap figure does not
 * count them. Each opens `count` connections, subscribes, and reports once every one has received
 * the first event (so every connection has caught up and waits in the hub).
 */
const clients = `
const { workerData, parentPort } = require('node:worker_threads');
const http = require('node:http');
const { WebSocket } = require('ws');
const { kind, url, count, topic } = workerData;
let received = 0;
const held = [];
for (let i = 0; i < count; i++) {
  if (kind === 'sse') {
    const request = http.get(url + '?after=start&topics=' + topic, { headers: { accept: 'text/event-stream' }, agent: false }, (response) => {
      let seen = false;
      response.setEncoding('utf8').on('data', (chunk) => { if (!seen && chunk.includes('data:')) { seen = true; if (++received === count) parentPort.postMessage('ready'); } });
    });
    held.push(request);
  } else {
    const socket = new WebSocket(url, { perMessageDeflate: false });
    let seen = false;
    socket.on('open', () => socket.send(JSON.stringify({ type: 'subscribe', after: 'start', topics: [topic] })));
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString());
      if (message.type !== 'event') return;
      socket.send(JSON.stringify({ type: 'ack', cursor: message.cursor }));
      if (!seen) { seen = true; if (++received === count) parentPort.postMessage('ready'); }
    });
    held.push(socket);
  }
}
parentPort.on('message', () => process.exit(0));
`;

/**
 * `feeds.<kind>.heap_kib_per_connection`: the server's heap per open connection, with
 * `connections` clients of the SSE feed, then of the WebSocket feed, each caught up and waiting.
 */
export async function feedMemory(plan: FeedMemoryPlan): Promise<FeedMemoryResult> {
  const outbox = await benchOutbox('feed_memory');
  try {
    await outbox.db.transaction((trx) => publish(trx, { topic, payload: { n: 1 } }, { schema: outbox.schema }));
    const sse = await perConnection('sse', plan.connections, async () => {
      const feed = sseFeed({ database: outbox.db, schema: outbox.schema, authorize: () => ({}) });
      const server = http.createServer((request, response) => feed.handle(request, response));
      return { feed, server, path: '/events', scheme: 'http' };
    });
    const websocket = await perConnection('websocket', plan.connections, async () => {
      const feed = websocketFeed({ database: outbox.db, schema: outbox.schema, authorize: () => ({}) });
      const server = http.createServer();
      server.on('upgrade', (request, socket, head) => feed.handle(request, socket, head));
      return { feed, server, path: '/ws', scheme: 'ws' };
    });
    progress(`feeds: ${format(sse)} KiB heap per SSE connection, ${format(websocket)} KiB per WebSocket connection (${format(plan.connections)} each)`);
    return { sse_heap_kib_per_connection: sse, websocket_heap_kib_per_connection: websocket };
  } finally {
    await outbox.close();
  }
}

interface Served {
  readonly feed: { readonly connections: number; close(): Promise<void> };
  readonly server: http.Server;
  readonly path: string;
  readonly scheme: string;
}

async function perConnection(kind: 'sse' | 'websocket', count: number, serve: () => Promise<Served>): Promise<number> {
  const { feed, server, path, scheme } = await serve();
  server.maxConnections = count + 10;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', 1024, resolve));
  const url = `${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;
  gc();
  const before = process.memoryUsage().heapUsed;
  const worker = new Worker(clients, { eval: true, workerData: { kind, url, count, topic } });
  try {
    await new Promise<void>((resolve, reject) => worker.once('message', () => resolve()).once('error', reject));
    await waitFor(`${count} ${kind} connections open`, () => feed.connections === count, 60_000);
    gc();
    return (process.memoryUsage().heapUsed - before) / 1024 / count;
  } finally {
    worker.postMessage('stop');
    await feed.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}
