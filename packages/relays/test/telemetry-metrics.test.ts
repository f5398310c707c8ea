import { inbox, migrateInbox } from '@tidings/inbox';
import { createRelay, observeStatus, publish, type Relay, type StatusMetrics } from '@tidings/outbox';
import { MemoryBroker, memoryTransport } from '@tidings/relays/testing';
import { pollingConsumer } from '@tidings/relays/polling';
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { inTransaction } from '../../../test/support/db.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';
import { counterValue, gaugeValues, histogramCount, registerTelemetry, type ReadableSpan, type TestTelemetry } from '../../../test/support/telemetry.ts';

let telemetry: TestTelemetry;
let feed: FeedServer;
const stops: Array<() => Promise<unknown> | void> = [];

beforeAll(async () => {
  telemetry = registerTelemetry();
  feed = await startFeedServer('otel_metrics');
  await migrateInbox(feed.outbox.db, { schema: feed.outbox.schema });
});
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});
afterAll(async () => {
  await feed?.close();
  await telemetry?.close();
});

const schema = () => feed.outbox.schema;

function startRelay(name: string, topic: string, broker: MemoryBroker): Relay {
  const relay = createRelay({
    name,
    database: feed.outbox.db,
    schema: schema(),
    transport: memoryTransport({ broker }),
    topics: [topic],
    pollIntervalMs: 100,
    retry: { minDelayMs: 5, maxDelayMs: 20, retries: 2 },
  });
  stops.push(() => relay.stop({ graceMs: 1_000 }));
  return relay;
}

describe('metrics on meter tidings', () => {
  it('count what was published and delivered, each event once, with relay and transport attributes, and time the sends', async () => {
    const topic = `metrics.delivered.${randomBytes(3).toString('hex')}`;
    const relayName = `metrics-${randomBytes(3).toString('hex')}`;
    const publishedBefore = counterValue(await telemetry.collect(), 'tidings.events.published');
    for (let t = 0; t < 5; t++) {
      await inTransaction(feed.outbox.pool, (client) =>
        publish(client, Array.from({ length: 8 }, (_, i) => ({ topic, key: `k${i % 3}`, payload: { t, i } })), { schema: schema() }),
      );
    }
    const broker = new MemoryBroker();
    await startRelay(relayName, topic, broker).start();
    await broker.waitFor(topic, 40);

    await waitUntil('the counters saw every delivery', async () => counterValue(await telemetry.collect(), 'tidings.relay.events.delivered', { relay: relayName }) === 40);
    const collected = await telemetry.collect();
    expect(counterValue(collected, 'tidings.events.published') - publishedBefore).toBe(40);
    expect(counterValue(collected, 'tidings.relay.events.delivered', { relay: relayName, transport: 'memory' })).toBe(40);
    expect(histogramCount(collected, 'tidings.relay.commit_to_ack.duration', { relay: relayName })).toBe(40);
    expect(histogramCount(collected, 'tidings.relay.send.duration', { relay: relayName })).toBeGreaterThanOrEqual(1);
    expect(counterValue(collected, 'tidings.relay.events.dead_lettered', { relay: relayName })).toBe(0);
  });

  it('count retries, dead letters and the events parked behind them', async () => {
    const topic = `metrics.failing.${randomBytes(3).toString('hex')}`;
    const relayName = `metrics-${randomBytes(3).toString('hex')}`;
    const broker = new MemoryBroker();
    broker.failWhen((event) => ((event.payload as { n: number }).n === 0 ? 'retry' : undefined));
    // One key: the first event fails for good, the two after it are parked behind it.
    await inTransaction(feed.outbox.pool, (client) => publish(client, [0, 1, 2].map((n) => ({ topic, key: 'one', payload: { n } })), { schema: schema() }));
    await startRelay(relayName, topic, broker).start();

    await waitUntil('the dead letter and the parked events were counted', async () => {
      const collected = await telemetry.collect();
      return counterValue(collected, 'tidings.relay.events.dead_lettered', { relay: relayName }) === 1 && counterValue(collected, 'tidings.relay.events.parked', { relay: relayName }) === 2;
    });
    const collected = await telemetry.collect();
    // retries: 2 → three attempts, the first two of them refusals counted as retries.
    expect(counterValue(collected, 'tidings.relay.events.retried', { relay: relayName, transport: 'memory' })).toBe(2);
    expect(counterValue(collected, 'tidings.relay.events.delivered', { relay: relayName })).toBe(0);

    const gauges: StatusMetrics = observeStatus(feed.outbox.db, { schema: schema() });
    stops.push(() => gauges.stop());
    const kept = await telemetry.collect();
    expect(gaugeValues(kept, 'tidings.relay.dead_letters').find((point) => point.attributes.relay === relayName)?.value).toBe(1);
    expect(gaugeValues(kept, 'tidings.relay.parked_keys').find((point) => point.attributes.relay === relayName)?.value).toBe(1);
  });

  it('report lag per relay and partition, dead letters and stalls as gauges read from status()', async () => {
    const topic = `metrics.lag.${randomBytes(3).toString('hex')}`;
    const relayName = `metrics-${randomBytes(3).toString('hex')}`;
    const broker = new MemoryBroker();
    const relay = startRelay(relayName, topic, broker);
    await relay.start();
    await relay.stop({ graceMs: 1_000 });
    // Abandoned as soon as it is behind with no worker: no waiting a day in a test.
    const gauges: StatusMetrics = observeStatus(feed.outbox.db, { schema: schema(), abandonedAfterSeconds: 0 });
    stops.push(() => gauges.stop());
    const [event] = await inTransaction(feed.outbox.pool, (client) => publish(client, [1, 2, 3].map((n) => ({ topic, key: 'lagging', payload: n })), { schema: schema() }));

    const behind = await telemetry.collect();
    const lag = gaugeValues(behind, 'tidings.relay.lag.events').filter((point) => point.attributes.relay === relayName);
    expect(lag.find((point) => point.attributes.partition === event!.partition)?.value).toBe(3);
    expect(lag.filter((point) => point.attributes.partition !== event!.partition).every((point) => point.value === 0)).toBe(true);
    const seconds = gaugeValues(behind, 'tidings.relay.lag.seconds').find((point) => point.attributes.relay === relayName && point.attributes.partition === event!.partition);
    expect(seconds?.value).toBeGreaterThanOrEqual(0);
    expect(gaugeValues(behind, 'tidings.relay.workers').find((point) => point.attributes.relay === relayName)?.value).toBe(0);
    expect(gaugeValues(behind, 'tidings.relay.dead_letters').find((point) => point.attributes.relay === relayName)?.value).toBe(0);
    expect(gaugeValues(behind, 'tidings.watermark.lag.events')[0]?.value).toBe(0);
    expect(gaugeValues(behind, 'tidings.relay.stalled').find((point) => point.attributes.relay === relayName)?.value).toBe(1);
    expect(gaugeValues(behind, 'tidings.relay.abandoned').find((point) => point.attributes.relay === relayName)?.value).toBe(1);

    await startRelay(relayName, topic, broker).start();
    await broker.waitFor(topic, 3);
    await waitUntil('the lag gauge went back to 0', async () =>
      gaugeValues(await telemetry.collect(), 'tidings.relay.lag.events').filter((point) => point.attributes.relay === relayName).every((point) => point.value === 0),
    );
    const caughtUp = await telemetry.collect();
    expect(gaugeValues(caughtUp, 'tidings.relay.stalled').find((point) => point.attributes.relay === relayName)?.value).toBe(0);
    expect(gaugeValues(caughtUp, 'tidings.relay.workers').find((point) => point.attributes.relay === relayName)?.value).toBe(1);
    expect(gaugeValues(caughtUp, 'tidings.relay.abandoned').find((point) => point.attributes.relay === relayName)?.value).toBe(0);
  });

  it('count the inbox duplicates skipped, and the handler runs, failures and durations of a consumer helper', async () => {
    const consumer = `metrics-inbox-${randomBytes(3).toString('hex')}`;
    const box = inbox({ consumer, schema: schema() });
    for (let i = 0; i < 3; i++) await inTransaction(feed.outbox.pool, (client) => box.handle(client, { eventId: 'same-event' }, () => undefined));
    expect(counterValue(await telemetry.collect(), 'tidings.inbox.duplicates', { consumer })).toBe(2);

    const topic = `metrics.handler.${randomBytes(3).toString('hex')}`;
    await feed.publish([1, 2].map((n) => ({ topic, payload: n })));
    let failures = 0;
    const polling = pollingConsumer({
      url: `${feed.origin}/feed?topics=${topic}`,
      consumer,
      schema: schema(),
      database: feed.outbox.pool,
      handler: async (_trx: pg.PoolClient, event) => {
        if (event.payload === 1 && failures++ < 1) throw new Error('not yet');
      },
      retry: { minDelayMs: 10, maxDelayMs: 20 },
      reconnect: { minDelayMs: 10, maxDelayMs: 20 },
    });
    stops.push(() => polling.close());
    await waitUntil('three handler runs were timed', async () => histogramCount(await telemetry.collect(), 'tidings.consumer.handler.duration', { consumer }) === 3);
    const collected = await telemetry.collect();
    expect(counterValue(collected, 'tidings.consumer.handler.failures', { consumer, transport: 'polling' })).toBe(1);
  });
});

describe('send spans of large batches', () => {
  it("link the producers of the batch's last 128 events, the most an SDK keeps by default, and drop none", async () => {
    const topic = `spans.large.${randomBytes(3).toString('hex')}`;
    const relayName = `spans-${randomBytes(3).toString('hex')}`;
    // 300 events of one key, each published by a request of its own, in one transaction: one batch.
    const traceparents = Array.from({ length: 300 }, () => `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`);
    const events = await inTransaction(feed.outbox.pool, (client) =>
      publish(client, traceparents.map((traceparent, n) => ({ topic, key: 'one', payload: { n }, headers: { traceparent } })), { schema: schema() }),
    );
    const broker = new MemoryBroker();
    const relay = createRelay({ name: relayName, database: feed.outbox.db, schema: schema(), transport: memoryTransport({ broker }), topics: [topic], batchSize: 500 });
    stops.push(() => relay.stop({ graceMs: 1_000 }));
    await relay.start();
    await broker.waitFor(topic, 300);

    let sends: ReadableSpan[] = [];
    await waitUntil('the send span ended', () => {
      sends = telemetry.spans.getFinishedSpans().filter((span) => span.attributes['tidings.relay'] === relayName && span.attributes['messaging.operation.type'] === 'send');
      return sends.length > 0;
    });
    expect(sends).toHaveLength(1);
    const [send] = sends;
    expect(send!.attributes['messaging.batch.message_count']).toBe(300);
    expect(send!.droppedLinksCount).toBe(0);
    expect(send!.links.map((link) => `00-${link.context.traceId}-${link.context.spanId}-01`)).toEqual(traceparents.slice(-128));
    expect(send!.links.map((link) => link.attributes?.['messaging.message.id'])).toEqual(events.slice(-128).map((event) => event.eventId));
  });
});
