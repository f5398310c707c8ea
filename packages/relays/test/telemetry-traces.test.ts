import { SpanKind, trace, type SpanContext } from '@opentelemetry/api';
import { createRelay, publish, type OutboxEvent, type Relay, type Transport } from '@tidings/outbox';
import { kafkaTransport } from '@tidings/relays/kafka';
import { pollingConsumer } from '@tidings/relays/polling';
import { consumeRabbitmq, rabbitmqTransport } from '@tidings/relays/rabbitmq';
import { sseConsumer } from '@tidings/relays/sse';
import { generateWebhookSecret, webhookReceiver, webhookTransport } from '@tidings/relays/webhook';
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { inTransaction } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';
import { kafkaWorld, startEffectConsumer as startKafkaConsumer, type KafkaWorld } from '../../../test/support/kafka-world.ts';
import { shareBrokerPerTest } from '../../../test/support/rabbitmq-broker-lock.ts';
import { registerTelemetry, sameSpan, type ReadableSpan, type TestTelemetry } from '../../../test/support/telemetry.ts';
import { loopbackOnly as loopback, startWebhookServer, type TestWebhookServer } from '@tidings/relays/testing';

let telemetry: TestTelemetry;
let kafka: KafkaWorld;
let feed: FeedServer;
const tracer = () => trace.getTracer('telemetry-test');
const stops: Array<() => Promise<unknown>> = [];

shareBrokerPerTest();
beforeAll(async () => {
  telemetry = registerTelemetry();
  kafka = await kafkaWorld('otel_traces', services.kafka);
  await kafka.outbox.pool.query(`CREATE TABLE "${kafka.schema}".writes (event_id text NOT NULL)`);
  feed = await startFeedServer('otel_feed', { outbox: kafka.outbox });
});
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
  telemetry.spans.reset();
});
afterAll(async () => {
  await feed?.close();
  await kafka?.close();
  await telemetry?.close();
});

const newTopic = (label: string) => `otel.${label}.${randomBytes(4).toString('hex')}`;

/** A service's request span that publishes one event in its transaction. */
async function publishInRequest(topic: string): Promise<{ request: SpanContext; event: OutboxEvent }> {
  return tracer().startActiveSpan('POST /orders', async (span) => {
    try {
      const [event] = await inTransaction(kafka.outbox.pool, (client) => publish(client, { topic, key: 'order-1', payload: { total: 12 } }, { schema: kafka.schema }));
      return { request: span.spanContext(), event: event! };
    } finally {
      span.end();
    }
  });
}

/** What a handler does: a database write in a span of its own, which must land in the publisher's trace. */
async function tracedWrite(trx: pg.PoolClient, eventId: string): Promise<void> {
  await tracer().startActiveSpan('INSERT writes', async (span) => {
    try {
      await trx.query(`INSERT INTO "${kafka.schema}".writes (event_id) VALUES ($1)`, [eventId]);
    } finally {
      span.end();
    }
  });
}

function startRelay(topic: string, transport: Transport): Relay {
  const relay = createRelay({
    name: `otel-${randomBytes(3).toString('hex')}`,
    database: kafka.outbox.db,
    schema: kafka.schema,
    transport,
    topics: [topic],
    pollIntervalMs: 100,
    leaseTtlMs: 2_000,
    heartbeatIntervalMs: 300,
    retry: { minDelayMs: 20, maxDelayMs: 500, retries: 1_000 },
  });
  stops.push(() => relay.stop({ graceMs: 1_000 }));
  return relay;
}

const finished = (): ReadableSpan[] => telemetry.spans.getFinishedSpans();

async function handlerWrite(request: SpanContext): Promise<ReadableSpan> {
  let write: ReadableSpan | undefined;
  await waitUntil("the handler's write span ended", async () => {
    write = finished().find((span) => span.name === 'INSERT writes' && span.spanContext().traceId === request.traceId);
    return write !== undefined;
  });
  return write!;
}

/**
 * One trace: the request published the event (its headers carry the request's context), the
 * consumer's process span is a child of the request, and the handler's write a child of that.
 */
async function expectConnectedTrace(request: SpanContext, event: OutboxEvent, system: string, destination: string): Promise<ReadableSpan> {
  expect(event.headers.traceparent).toBe(`00-${request.traceId}-${request.spanId}-01`);
  const write = await handlerWrite(request);
  const process = finished().find((span) => span.kind === SpanKind.CONSUMER && span.attributes['messaging.message.id'] === event.eventId);
  expect(process, 'a CONSUMER span for the event').toBeDefined();
  expect(process!.name).toBe(`process ${destination}`);
  expect(process!.attributes).toMatchObject({
    'messaging.system': system,
    'messaging.operation.type': 'process',
    'messaging.destination.name': destination,
  });
  expect(sameSpan(process!.parentSpanContext, request), 'the process span is a child of the publishing request').toBe(true);
  expect(sameSpan(write.parentSpanContext, process!.spanContext()), "the handler's write is a child of the process span").toBe(true);
  return process!;
}

/** The relay's send span for the batch that carried the event: CLIENT, linked to the publishing request. */
async function expectSendSpan(request: SpanContext, event: OutboxEvent, system: string): Promise<void> {
  let send: ReadableSpan | undefined;
  // The send ends when the acknowledgement is back, which may be after the handler ran.
  await waitUntil('a send span linked to the publishing request ended', async () => {
    send = finished().find((span) => span.attributes['messaging.operation.type'] === 'send' && span.links.some((link) => sameSpan(link.context, request)));
    return send !== undefined;
  });
  expect(send!.kind).toBe(SpanKind.CLIENT);
  expect(send!.attributes).toMatchObject({ 'messaging.system': system, 'messaging.destination.name': event.topic, 'messaging.batch.message_count': 1 });
  expect(send!.links.find((link) => sameSpan(link.context, request))!.attributes).toEqual({ 'messaging.message.id': event.eventId });
  expect(send!.status.code).not.toBe(2);
}

describe('one trace from the publishing request to the consumer handler', () => {
  it('runs through RabbitMQ into consumeRabbitmq', async () => {
    const topic = newTopic('rabbitmq');
    const consumer = await consumeRabbitmq({
      url: services.rabbitmq,
      queue: `test.otel.${randomBytes(4).toString('hex')}`,
      bindings: [topic],
      consumer: 'otel-rabbitmq',
      schema: kafka.schema,
      database: kafka.outbox.pool,
      handler: (trx: pg.PoolClient, event) => tracedWrite(trx, event.eventId),
    });
    stops.push(() => consumer.close());
    await startRelay(topic, rabbitmqTransport({ url: services.rabbitmq })).start();

    const { request, event } = await publishInRequest(topic);

    await expectConnectedTrace(request, event, 'rabbitmq', consumer.queue);
    await expectSendSpan(request, event, 'rabbitmq');
  });

  it.each(['inbox', 'checkpoint'] as const)('runs through Kafka into consumeKafka (mode %s)', async (mode) => {
    const topic = await kafka.topic(`otel-${mode}`, 1);
    const { consumer } = await startKafkaConsumer(kafka, { name: `otel-kafka-${mode}`, topics: [topic], mode, handler: (trx, event) => tracedWrite(trx, event.eventId) });
    stops.push(() => consumer.close());
    await startRelay(topic, kafkaTransport({ brokers: services.kafka, client: { logLevel: 'nothing' } })).start();

    const { request, event } = await publishInRequest(topic);

    const process = await expectConnectedTrace(request, event, 'kafka', topic);
    expect(process.attributes['messaging.destination.partition.id']).toBe('0');
    await expectSendSpan(request, event, 'kafka');
  });

  it('runs through a signed webhook into webhookReceiver', async () => {
    const topic = newTopic('webhook');
    const secret = generateWebhookSecret();
    const receiver = webhookReceiver({
      secrets: secret,
      consumer: 'otel-webhook',
      schema: kafka.schema,
      database: kafka.outbox.pool,
      handler: (trx: pg.PoolClient, event) => tracedWrite(trx, event.eventId),
    });
    const server: TestWebhookServer = await startWebhookServer(async (req, res, body) => {
      const reply = await receiver.handle({ method: req.method, headers: req.headers, body });
      res.writeHead(reply.status, reply.headers).end(reply.body);
    });
    stops.push(() => server.close(), () => receiver.close());
    await startRelay(topic, webhookTransport({ url: server.url, secrets: [secret], addressPolicy: loopback })).start();

    const { request, event } = await publishInRequest(topic);

    await expectConnectedTrace(request, event, 'webhook', topic);
    await expectSendSpan(request, event, 'webhook');
  });

  it.each([
    ['sse', '/events', sseConsumer],
    ['polling', '/feed', pollingConsumer],
  ] as const)('runs through the %s feed into its consumer', async (kind, path, make) => {
    const topic = newTopic(kind);
    const consumer = make({
      url: `${feed.origin}${path}?topics=${topic}`,
      consumer: `otel-${kind}`,
      schema: kafka.schema,
      database: kafka.outbox.pool,
      handler: (trx: pg.PoolClient, event) => tracedWrite(trx, event.eventId),
      retry: { minDelayMs: 20, maxDelayMs: 200 },
      reconnect: { minDelayMs: 20, maxDelayMs: 200 },
    });
    stops.push(() => consumer.close());

    const { request, event } = await publishInRequest(topic);

    await expectConnectedTrace(request, event, kind, topic);
  });

  it('keeps the trace context a caller put into the headers itself', async () => {
    const own = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const [event] = await tracer().startActiveSpan('request', async (span) => {
      try {
        return await inTransaction(kafka.outbox.pool, (client) =>
          publish(client, { topic: newTopic('own'), payload: 1, headers: { traceparent: own, tenant: 'x' } }, { schema: kafka.schema }),
        );
      } finally {
        span.end();
      }
    });
    expect(event!.headers).toEqual({ traceparent: own, tenant: 'x' });
  });

  it('adds no trace headers when no span is active', async () => {
    const [event] = await inTransaction(kafka.outbox.pool, (client) => publish(client, { topic: newTopic('none'), payload: 1 }, { schema: kafka.schema }));
    expect(event!.headers).toEqual({});
  });
});
