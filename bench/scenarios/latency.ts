import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { createRelay, publish, type OutboxEvent, type SendOutcome, type Transport } from '@tidings/outbox';
import { SseParser, sseFeed } from '@tidings/relays/sse';
import { websocketFeed } from '@tidings/relays/websocket';
import { WebSocket } from 'ws';
import { benchOutbox, databaseUrl, median, orderPayload, percentile, progress, topic, waitFor, type BenchOutbox } from '../support.ts';

export interface LatencyPlan {
  /** Events per second the service commits, one event per business transaction. */
  readonly rate: number;
  /** How long the load runs. */
  readonly seconds: number;
  /** The first seconds are left out of the figures (connections, JIT, first leases). */
  readonly warmupSeconds: number;
  /** Connections the service commits over. */
  readonly concurrency: number;
}

export interface LatencyResult {
  readonly p50_ms: number;
  readonly p99_ms: number;
  readonly max_ms: number;
  /** Events measured (those committed after the warm-up). */
  readonly events: number;
  /** The rate the service actually committed at. */
  readonly committed_per_s: number;
}

/** The destination's own floor, measured beside a relay's latency (see `directLatency`). */
export interface DirectLatencyResult {
  readonly direct_p50_ms: number;
  readonly direct_p99_ms: number;
  readonly direct_max_ms: number;
  /** The rate the events were actually sent at. */
  readonly direct_per_s: number;
}

/** Where an event arrives: resolves with a function that stops listening. */
type Sink = (outbox: BenchOutbox, arrived: (eventIds: readonly string[]) => void) => Promise<() => Promise<void>>;

/**
 * `latency.<transport>`: a service commits one event per transaction at a steady rate while a
 * relay worker (in the same process, so both read one clock) forwards them; each event's latency
 * runs from the moment its COMMIT returned to the moment the destination acknowledged it (the
 * transport's `send` resolved with `delivered` for it: publisher confirm, acks=all, 2xx).
 */
export function relayLatency(label: string, transport: () => Transport, plan: LatencyPlan): Promise<LatencyResult> {
  return measureLatency(label, plan, async (outbox, arrived) => {
    const relay = createRelay({
      name: `latency-${label}`,
      database: outbox.db,
      schema: outbox.schema,
      transport: acknowledging(transport(), arrived),
      startFrom: 'now',
    });
    let held = 0;
    await relay.start();
    await waitFor(`the ${label} relay holds every partition`, () => (held = relay.status().partitions.length) === 16, 30_000).catch((error: Error) => {
      throw new Error(`${error.message} (holds ${held})`);
    });
    return () => relay.stop();
  });
}

/**
 * `latency.sse`: the same load, read by a Server-Sent Events client of an SSE feed served over
 * HTTP on 127.0.0.1; each event's latency runs from its COMMIT to its frame's arrival at the client.
 */
export function sseLatency(plan: LatencyPlan): Promise<LatencyResult> {
  return measureLatency('sse', plan, async (outbox, arrived) => {
    const feed = sseFeed({ database: outbox.db, schema: outbox.schema, authorize: () => ({}), from: 'now' });
    const server = http.createServer((request, response) => feed.handle(request, response));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const parser = new SseParser((message) => {
      if (message.event === topic) arrived([(JSON.parse(message.data) as { eventId: string }).eventId]);
    });
    const request = http.get(`http://127.0.0.1:${port}/events`, { headers: { accept: 'text/event-stream' } });
    const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
      request.once('response', resolve).once('error', reject);
    });
    if (response.statusCode !== 200) throw new Error(`bench: the SSE feed answered ${response.statusCode}`);
    response.setEncoding('utf8').on('data', (chunk: string) => parser.push(chunk));
    await waitFor('the SSE stream is open', () => feed.connections === 1, 10_000);
    return async () => {
      request.destroy();
      await feed.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    };
  });
}

/**
 * `latency.websocket`: the same load, read by a `ws` client of a WebSocket feed on 127.0.0.1 that
 * acknowledges each event as it arrives (the feed's default 100 in flight); each event's latency
 * runs from its COMMIT to its message's arrival at the client.
 */
export function websocketLatency(plan: LatencyPlan): Promise<LatencyResult> {
  return measureLatency('websocket', plan, async (outbox, arrived) => {
    const feed = websocketFeed({ database: outbox.db, schema: outbox.schema, authorize: () => ({}), from: 'now' });
    const server = http.createServer();
    server.on('upgrade', (request, socket, head) => feed.handle(request, socket, head));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const client = new WebSocket(`ws://127.0.0.1:${port}/ws`, { perMessageDeflate: false });
    let subscribed = false;
    client.on('message', (data) => {
      const message = JSON.parse(data.toString()) as { type: string; cursor: string; event: { eventId: string } };
      if (message.type === 'subscribed') subscribed = true;
      if (message.type !== 'event') return;
      arrived([message.event.eventId]);
      client.send(JSON.stringify({ type: 'ack', cursor: message.cursor }));
    });
    await new Promise<void>((resolve, reject) => client.once('open', resolve).once('error', reject));
    client.send(JSON.stringify({ type: 'subscribe', after: 'now', topics: [topic] }));
    await waitFor('the WebSocket subscription runs', () => subscribed, 10_000);
    return async () => {
      client.terminate();
      await feed.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    };
  });
}

/**
 * `latency.<broker>.direct_*`: the floor under `relayLatency` — the same rate, duration and
 * warm-up, each event sent straight to the destination by its own client (`Target.publishOne`:
 * publisher confirm, acks=all, 2xx), timed from the send call to the acknowledgement. No
 * database is involved: the gap between the two is the relay's share (commit to read, the read,
 * and the wait behind the partition's previous batch).
 */
export async function directLatency(label: string, publishOne: (event: OutboxEvent) => Promise<void>, plan: LatencyPlan): Promise<DirectLatencyResult> {
  const warmup = Math.round(plan.rate * plan.warmupSeconds);
  const latencies: number[] = [];
  // Connect (and fetch metadata) before the clock starts, as the relay's transport did.
  await publishOne(directEvent(-1));
  const started = performance.now();
  const total = await paced(plan, async (i) => {
    const event = directEvent(i);
    const sent = performance.now();
    await publishOne(event);
    if (i >= warmup) latencies.push(performance.now() - sent);
  });
  const result = {
    direct_p50_ms: median(latencies),
    direct_p99_ms: percentile(latencies, 99),
    direct_max_ms: Math.max(...latencies),
    direct_per_s: total / ((performance.now() - started) / 1000),
  };
  progress(`latency.${label} direct: p50 ${result.direct_p50_ms.toFixed(1)} ms, p99 ${result.direct_p99_ms.toFixed(1)} ms at ${Math.round(result.direct_per_s)} sends/s`);
  return result;
}

/** An event shaped like the ones `commitOne` publishes, for sending without the outbox. */
function directEvent(n: number): OutboxEvent {
  const order = orderPayload(n);
  return {
    eventId: `direct-${randomUUID()}`,
    topic,
    key: order.customer as string,
    partition: Math.abs(n) % 16,
    payload: order as OutboxEvent['payload'],
    headers: {},
    tenant: null,
    createdAt: new Date(),
    position: { seq: '0', id: String(n + 2) },
  };
}

/**
 * Starts `fire(i)` for i = 0, 1, … at `plan.rate` per second for `plan.seconds`, without waiting
 * for earlier ones (a service does not wait for other requests); resolves with the count once all
 * have settled, and rejects with the first failure.
 */
async function paced(plan: LatencyPlan, fire: (i: number) => Promise<void>): Promise<number> {
  const total = Math.round(plan.rate * plan.seconds);
  const started = performance.now();
  const inFlight = new Set<Promise<void>>();
  let failure: Error | undefined;
  for (let n = 0; n < total && !failure; ) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * plan.rate) + 1);
    for (; n < due; n++) {
      const one = fire(n).catch((error: Error) => void (failure ??= error));
      inFlight.add(one);
      void one.finally(() => inFlight.delete(one));
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(inFlight);
  if (failure) throw failure;
  return total;
}

async function measureLatency(label: string, plan: LatencyPlan, sink: Sink): Promise<LatencyResult> {
  const outbox = await benchOutbox(`latency_${label}`);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: plan.concurrency });
  const committedAt = new Map<string, number>();
  const arrivedAt = new Map<string, number>();
  const stop = await sink(outbox, (eventIds) => {
    const now = performance.now();
    for (const id of eventIds) if (!arrivedAt.has(id)) arrivedAt.set(id, now);
  });
  try {
    // Open the pool's connections before the clock starts.
    await Promise.all(Array.from({ length: plan.concurrency }, () => pool.connect())).then((clients) => clients.forEach((c) => c.release()));
    const warmup = Math.round(plan.rate * plan.warmupSeconds);
    const measured: string[] = [];
    const started = performance.now();
    const total = await paced(plan, async (i) => {
      const eventId = await commitOne(pool, outbox.schema, i);
      committedAt.set(eventId, performance.now());
      if (i >= warmup) measured.push(eventId);
    });
    const committedPerS = total / ((performance.now() - started) / 1000);
    await waitFor(`every ${label} event arrived`, () => arrivedAt.size >= committedAt.size, 60_000).catch((error: Error) => {
      throw new Error(`${error.message} (${arrivedAt.size} of ${committedAt.size})`);
    });
    const latencies = measured.map((id) => arrivedAt.get(id)! - committedAt.get(id)!);
    const result = {
      p50_ms: median(latencies),
      p99_ms: percentile(latencies, 99),
      max_ms: Math.max(...latencies),
      events: latencies.length,
      committed_per_s: committedPerS,
    };
    progress(`latency.${label}: p50 ${result.p50_ms.toFixed(1)} ms, p99 ${result.p99_ms.toFixed(1)} ms at ${Math.round(committedPerS)} commits/s`);
    return result;
  } finally {
    await stop();
    await pool.end();
    await outbox.close();
  }
}

async function commitOne(pool: pg.Pool, schema: string, n: number): Promise<string> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const order = orderPayload(n);
    const [event] = await publish(client, { topic, key: order.customer as string, payload: order }, { schema });
    await client.query('COMMIT');
    return event!.eventId;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/** The transport, reporting each event the moment its destination acknowledged it. */
function acknowledging(inner: Transport, arrived: (eventIds: readonly string[]) => void): Transport {
  return {
    name: inner.name,
    capabilities: inner.capabilities,
    async send(batch: readonly OutboxEvent[], signal: AbortSignal): Promise<readonly SendOutcome[]> {
      const outcomes = await inner.send(batch, signal);
      arrived(batch.filter((_, i) => outcomes[i]!.status === 'delivered').map((event) => event.eventId));
      return outcomes;
    },
    close: () => inner.close(),
  };
}
