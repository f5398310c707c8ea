import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createRelay, type OutboxEvent, type SendOutcome, type Transport } from '@tidings/outbox';
import { SseParser, sseFeed } from '@tidings/relays/sse';
import { websocketFeed } from '@tidings/relays/websocket';
import { WebSocket } from 'ws';
import { startChild } from '../child.ts';
import { machineMs, paced } from '../load.ts';
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
  /**
   * Where the time went, for the relays (not the feeds): from the COMMIT to the relay handing the
   * event to its transport (wake-up, the read, the wait behind the partition's previous batch),
   * and from there to the acknowledgement (the transport and the destination).
   */
  readonly commit_to_send_p50_ms?: number;
  readonly commit_to_send_p99_ms?: number;
  readonly send_to_ack_p50_ms?: number;
  readonly send_to_ack_p99_ms?: number;
  /** How busy this process's event loop was while the load ran (0 to 1): the service's commits, the relay and the measuring share it. */
  readonly event_loop_utilization: number;
  /** The 99th percentile of the event loop's delay over the run (`monitorEventLoopDelay`). */
  readonly event_loop_delay_p99_ms: number;
}

/** The destination's own floor, measured beside a relay's latency (see `directLatency`). */
export interface DirectLatencyResult {
  readonly direct_p50_ms: number;
  readonly direct_p99_ms: number;
  readonly direct_max_ms: number;
  /** The rate the events were actually sent at. */
  readonly direct_per_s: number;
}

/**
 * Where an event arrives: resolves with a function that stops listening. A relay's sink also
 * tells when it handed each event to its transport.
 */
type Sink = (outbox: BenchOutbox, arrived: (eventIds: readonly string[]) => void, sent: (eventIds: readonly string[]) => void) => Promise<() => Promise<void>>;

/**
 * `latency.<transport>`: a service (a process of its own, bench/workers/latency-load.ts) commits
 * one event per transaction at a steady rate while a relay worker in this process forwards them;
 * each event's latency runs from the moment its COMMIT returned to the moment the destination
 * acknowledged it (the transport's `send` resolved with `delivered` for it: publisher confirm,
 * acks=all, 2xx), both read on the machine's monotonic clock.
 */
export function relayLatency(label: string, transport: () => Transport, plan: LatencyPlan): Promise<LatencyResult> {
  return measureLatency(label, plan, async (outbox, arrived, sent) => {
    const relay = createRelay({
      name: `latency-${label}`,
      database: outbox.db,
      schema: outbox.schema,
      transport: acknowledging(transport(), arrived, sent),
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

async function measureLatency(label: string, plan: LatencyPlan, sink: Sink): Promise<LatencyResult> {
  const outbox = await benchOutbox(`latency_${label}`);
  const committedAt = new Map<string, number>();
  const arrivedAt = new Map<string, number>();
  const sentAt = new Map<string, number>();
  const stop = await sink(
    outbox,
    (eventIds) => {
      const now = machineMs();
      for (const id of eventIds) if (!arrivedAt.has(id)) arrivedAt.set(id, now);
    },
    (eventIds) => {
      const now = machineMs();
      for (const id of eventIds) if (!sentAt.has(id)) sentAt.set(id, now);
    },
  );
  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  // The service commits from a process of its own: sharing this event loop, its 1,000 commits a
  // second (three round trips each) made the relay's reads, sends and acknowledgements wait.
  const service = startChild('latency-load');
  try {
    const warmup = Math.round(plan.rate * plan.warmupSeconds);
    const measured: string[] = [];
    service.onMessage((message) => {
      if (message.type !== 'committed') return;
      for (const [eventId, at, i] of message.events as Array<[string, number, number]>) {
        committedAt.set(eventId, at);
        if (i >= warmup) measured.push(eventId);
      }
    });
    const loopAtStart = performance.eventLoopUtilization();
    loopDelay.enable();
    service.send({ url: databaseUrl, schema: outbox.schema, plan, concurrency: plan.concurrency });
    const done = await service.next('done', (plan.seconds + 60) * 1000);
    const committedPerS = (done.total as number) / (done.seconds as number);
    loopDelay.disable();
    const loop = performance.eventLoopUtilization(loopAtStart);
    await waitFor(`every ${label} event arrived`, () => arrivedAt.size >= committedAt.size, 60_000).catch((error: Error) => {
      throw new Error(`${error.message} (${arrivedAt.size} of ${committedAt.size})`);
    });
    const latencies = measured.map((id) => arrivedAt.get(id)! - committedAt.get(id)!);
    const split =
      sentAt.size > 0
        ? (() => {
            const toSend = measured.map((id) => sentAt.get(id)! - committedAt.get(id)!);
            const toAck = measured.map((id) => arrivedAt.get(id)! - sentAt.get(id)!);
            return {
              commit_to_send_p50_ms: median(toSend),
              commit_to_send_p99_ms: percentile(toSend, 99),
              send_to_ack_p50_ms: median(toAck),
              send_to_ack_p99_ms: percentile(toAck, 99),
            };
          })()
        : {};
    const result: LatencyResult = {
      p50_ms: median(latencies),
      p99_ms: percentile(latencies, 99),
      max_ms: Math.max(...latencies),
      events: latencies.length,
      committed_per_s: committedPerS,
      ...split,
      event_loop_utilization: loop.utilization,
      event_loop_delay_p99_ms: loopDelay.percentile(99) / 1e6,
    };
    progress(
      `latency.${label}: p50 ${result.p50_ms.toFixed(1)} ms, p99 ${result.p99_ms.toFixed(1)} ms at ${Math.round(committedPerS)} commits/s` +
        (result.commit_to_send_p99_ms === undefined ? '' : `; commit to send p50/p99 ${result.commit_to_send_p50_ms!.toFixed(1)}/${result.commit_to_send_p99_ms.toFixed(1)} ms, send to ack ${result.send_to_ack_p50_ms!.toFixed(1)}/${result.send_to_ack_p99_ms!.toFixed(1)} ms`) +
        `; event loop ${(result.event_loop_utilization * 100).toFixed(0)} % busy, delay p99 ${result.event_loop_delay_p99_ms.toFixed(1)} ms`,
    );
    return result;
  } finally {
    await service.stop();
    await stop();
    await outbox.close();
  }
}

/** The transport, reporting each event the moment it was handed over and the moment its destination acknowledged it. */
function acknowledging(inner: Transport, arrived: (eventIds: readonly string[]) => void, sent: (eventIds: readonly string[]) => void): Transport {
  return {
    name: inner.name,
    capabilities: inner.capabilities,
    async send(batch: readonly OutboxEvent[], signal: AbortSignal): Promise<readonly SendOutcome[]> {
      sent(batch.map((event) => event.eventId));
      const outcomes = await inner.send(batch, signal);
      arrived(batch.filter((_, i) => outcomes[i]!.status === 'delivered').map((event) => event.eventId));
      return outcomes;
    },
    close: () => inner.close(),
  };
}
