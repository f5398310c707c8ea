import { migrateInbox } from '@tidings/inbox';
import { ConfigError, encodePosition, type OutboxEvent } from '@tidings/outbox';
import { consumeKafka, decodeRecord, kafkaTransport } from '@tidings/relays/kafka';
import { pollingConsumer, pollingFeed } from '@tidings/relays/polling';
import { consumeRabbitmq, decodeMessage, rabbitmqTransport } from '@tidings/relays/rabbitmq';
import { websocketConsumer, websocketFeed } from '@tidings/relays/websocket';
import { sseConsumer, sseFeed, type Delivery, type FeedDelivery, type ReceivedEvent } from '@tidings/relays/sse';
import { loopbackOnly, openSse, openWebSocketFeed, testEvent, type SseReader } from '@tidings/relays/testing';
import {
  generateWebhookSecret,
  migrateWebhooks,
  startWebhookDispatcher,
  verifyWebhook,
  webhookEndpoints,
  webhookReceiver,
  webhookTransport,
  type WebhookDispatcherEvent,
  type WebhookMessage,
} from '@tidings/relays/webhook';
import { CloudEvent, HTTP, Kafka, type KafkaMessage } from 'cloudevents';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { services } from '../../../test/support/env.ts';
import { freshOutbox, type TestOutbox } from '../../../test/support/db.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';
import { shareBrokerPerTest } from '../../../test/support/rabbitmq-broker-lock.ts';
import { testKeyring } from '../../../test/support/secret-key.ts';
import { captureAmqp, captureKafka, captureWebhooks, kafkaHeaderText, sendOne } from '../../../test/support/wire-capture.ts';

/**
 * The `cloudEvents` option, read back with the official `cloudevents` SDK from what each transport
 * actually sent: binary content mode on RabbitMQ, Kafka and webhooks, structured JSON on the feeds.
 */

const source = 'https://orders.example.com/outbox';
const cloudEvents = { source };
const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const tracestate = 'vendor=abc';
const createdAt = new Date('2026-01-31T12:00:00.123Z');
const payload = { id: 'order-7', total: 42.5, lines: ['a', 'ü'] };
const unique = (label: string): string => `ce.${label}.${randomBytes(4).toString('hex')}`;

function fullEvent(topic: string, key = 'order-7'): OutboxEvent {
  return testEvent({ topic, key, tenant: 'acme', createdAt, payload, headers: { traceparent, tracestate, 'x-request-id': 'r-1' } });
}


/**
 * The SDK's event, validated: `validate()` checks the attributes against the spec's schema, and
 * rebuilding it in strict mode checks every extension's name and value too.
 */
function valid(event: CloudEvent<unknown>): Record<string, unknown> {
  expect(event.validate()).toBe(true);
  const strict = new CloudEvent(event.toJSON() as Record<string, unknown>);
  return strict.toJSON() as Record<string, unknown>;
}

/** The attributes every CloudEvent of `fullEvent` carries. */
function attributesOf(event: OutboxEvent): Record<string, unknown> {
  return {
    specversion: '1.0',
    id: event.eventId,
    source,
    type: event.topic,
    subject: event.key,
    time: '2026-01-31T12:00:00.123Z',
    datacontenttype: 'application/json',
    traceparent,
    tracestate,
    tidingstenant: 'acme',
    data: payload,
  };
}

/** What the consumer helpers must hand the handler for `fullEvent`, CloudEvents mode or not. */
function receivedFields(event: OutboxEvent) {
  return {
    eventId: event.eventId,
    topic: event.topic,
    key: event.key,
    tenant: 'acme',
    payload,
    headers: { traceparent, tracestate, 'x-request-id': 'r-1' },
    createdAt,
  };
}

describe('CloudEvents on RabbitMQ (AMQP binding, binary mode)', () => {
  shareBrokerPerTest();

  it('carries the attributes as cloudEvents: headers and the data content type as the content-type property, next to the tidings headers', async () => {
    const topic = unique('amqp');
    const capture = await captureAmqp(topic);
    try {
      const event = fullEvent(topic);
      await sendOne(rabbitmqTransport({ url: services.rabbitmq, cloudEvents }), event);
      const message = await capture.next();
      const headers = message.properties.headers as Record<string, string>;
      const attributes = Object.fromEntries(
        Object.entries(headers)
          .filter(([name]) => name.startsWith('cloudEvents:'))
          .map(([name, value]) => [name.slice('cloudEvents:'.length), value]),
      );
      // The SDK has no AMQP binding: the event is built from the application properties as the binding maps them.
      const read = valid(new CloudEvent({ ...attributes, datacontenttype: message.properties.contentType, data: JSON.parse(message.content.toString('utf8')) }, false));
      expect(read).toEqual(attributesOf(event));
      expect(headers).toMatchObject({ 'x-tidings-key': 'order-7', 'x-tidings-wire-version': '1', traceparent });
      expect(message.properties.messageId).toBe(event.eventId);

      // The consumer helper reads it as the same event, without the attributes among its headers.
      expect(decodeMessage(message, 'q')).toMatchObject(receivedFields(event));
      expect(decodeMessage(message, 'q').headers).toEqual(receivedFields(event).headers);
    } finally {
      await capture.close();
    }
  });
});

describe('CloudEvents on Kafka (Kafka binding, binary mode)', () => {
  it('is read by the SDK from ce_ headers, the content-type header and the JSON value, with the key as partitionkey', async () => {
    const capture = await captureKafka('binary');
    try {
      const event = fullEvent(capture.topic);
      await sendOne(kafkaTransport({ brokers: services.kafka, client: { logLevel: 'nothing' }, cloudEvents }), event);
      const [record] = await capture.records(1);
      const headers = kafkaHeaderText(record!);
      const message: KafkaMessage = { headers, key: record!.key!.toString('utf8'), value: record!.value!, body: record!.value!, timestamp: record!.timestamp };
      const read = Kafka.toEvent(message);
      expect(Array.isArray(read)).toBe(false);
      expect(valid(read as CloudEvent<unknown>)).toEqual({ ...attributesOf(event), partitionkey: 'order-7' });
      expect(headers).toMatchObject({ tidings_event_id: event.eventId, tidings_wire_version: '1', 'content-type': 'application/json', ce_specversion: '1.0' });

      expect(decodeRecord(capture.topic, 0, record!)).toMatchObject(receivedFields(event));
      expect(decodeRecord(capture.topic, 0, record!).headers).toEqual(receivedFields(event).headers);
    } finally {
      await capture.close();
    }
  });

  it('leaves out subject and tidingstenant for an event without key or tenant', async () => {
    const capture = await captureKafka('bare');
    try {
      const event = testEvent({ topic: capture.topic, createdAt, payload: 1 });
      await sendOne(kafkaTransport({ brokers: services.kafka, client: { logLevel: 'nothing' }, cloudEvents }), event);
      const [record] = await capture.records(1);
      const headers = kafkaHeaderText(record!);
      expect(Object.keys(headers).filter((name) => name.startsWith('ce_')).sort()).toEqual(['ce_id', 'ce_source', 'ce_specversion', 'ce_time', 'ce_type']);
      const message: KafkaMessage = { headers, key: '', value: record!.value!, body: record!.value! };
      const read = Kafka.toEvent(message) as CloudEvent<unknown>;
      expect(read.validate()).toBe(true);
      expect(read).toMatchObject({ id: event.eventId, type: capture.topic, data: 1 });
      expect(read.subject).toBeUndefined();
    } finally {
      await capture.close();
    }
  });
});

describe('the RabbitMQ and Kafka consumer helpers', () => {
  let outbox: TestOutbox;
  beforeAll(async () => {
    outbox = await freshOutbox('ce_consumers');
    await migrateInbox(outbox.db, { schema: outbox.schema });
  });
  afterAll(async () => {
    await outbox?.close();
  });
  shareBrokerPerTest();

  it('consumeRabbitmq applies a CloudEvents-mode message as the event that was sent', async () => {
    const topic = unique('amqp-consumer');
    const seen: ReceivedEvent<Delivery>[] = [];
    const consumer = await consumeRabbitmq({
      url: services.rabbitmq,
      queue: `ce.${randomBytes(4).toString('hex')}`,
      bindings: [topic],
      consumer: 'ce-amqp',
      schema: outbox.schema,
      database: outbox.db,
      handler: (_trx, event) => void seen.push(event),
    });
    try {
      const event = fullEvent(topic);
      await sendOne(rabbitmqTransport({ url: services.rabbitmq, cloudEvents }), event);
      await waitUntil('the message was applied', async () => seen.length === 1);
      expect(seen[0]).toMatchObject(receivedFields(event));
      expect(seen[0]!.headers).toEqual(receivedFields(event).headers);
    } finally {
      await consumer.close();
    }
  });

  it('consumeKafka applies a CloudEvents-mode record as the event that was sent', async () => {
    const capture = await captureKafka('consumer');
    const seen: ReceivedEvent<Delivery>[] = [];
    const consumer = await consumeKafka({
      brokers: services.kafka,
      client: { logLevel: 'nothing' },
      topics: [capture.topic],
      fromBeginning: true,
      consumer: 'ce-kafka',
      schema: outbox.schema,
      database: outbox.db,
      handler: (_trx, event) => void seen.push(event),
    });
    try {
      const event = fullEvent(capture.topic);
      await sendOne(kafkaTransport({ brokers: services.kafka, client: { logLevel: 'nothing' }, cloudEvents }), event);
      await waitUntil('the record was applied', async () => seen.length === 1, 30_000);
      expect(seen[0]).toMatchObject(receivedFields(event));
      expect(seen[0]!.headers).toEqual(receivedFields(event).headers);
    } finally {
      await consumer.close();
      await capture.close();
    }
  });
});

describe('CloudEvents on webhooks (HTTP binding, binary mode)', () => {
  let feed: FeedServer;
  let schema: string;
  beforeAll(async () => {
    feed = await startFeedServer('ce_webhook');
    schema = `t_ce_inbox_${randomBytes(4).toString('hex')}`;
    await feed.outbox.db.query(`CREATE SCHEMA "${schema}"`);
    await migrateInbox(feed.outbox.db, { schema });
  });
  afterAll(async () => {
    await feed?.outbox.db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await feed?.close();
  });

  it('sends the payload as the signed body and the attributes as ce- headers, which HTTP.toEvent reads and the receiver helper applies', async () => {
    const capture = await captureWebhooks();
    try {
      const secret = generateWebhookSecret();
      const event = fullEvent('orders.created');
      await sendOne(webhookTransport({ url: capture.server.url, secrets: [secret], addressPolicy: loopbackOnly, cloudEvents }), event);
      const request = await capture.next();

      expect(request.body.toString('utf8')).toBe('{"id":"order-7","total":42.5,"lines":["a","ü"]}');
      expect(request.headers).toMatchObject({
        'content-type': 'application/json',
        'webhook-id': event.eventId,
        'tidings-wire-version': '1',
        'ce-specversion': '1.0',
        traceparent,
        // The event's other headers: base64 of their JSON.
        'ce-tidingsheaders': Buffer.from('{"x-request-id":"r-1"}').toString('base64'),
      });
      const read = HTTP.toEvent({ headers: request.headers as Record<string, string>, body: request.body.toString('utf8') }) as CloudEvent<unknown>;
      expect(valid(read)).toEqual({ ...attributesOf(event), tidingsheaders: request.headers['ce-tidingsheaders'] });

      const applied: WebhookMessage[] = [];
      const receiver = webhookReceiver({ secrets: secret, consumer: 'ce-hooks', schema, database: feed.outbox.db, handler: (_trx, message) => void applied.push(message) });
      const reply = await receiver.handle({ method: 'POST', headers: request.headers, body: request.body });
      expect(reply.status).toBe(200);
      expect(applied).toHaveLength(1);
      expect(applied[0]).toMatchObject(receivedFields(event));
      expect(applied[0]!.headers).toEqual(receivedFields(event).headers);
      await receiver.close();
    } finally {
      await capture.close();
    }
  });

  it('percent-encodes a key or tenant outside printable ASCII in its ce- header, which the receiver decodes; the ce- headers are not signed, the body is', async () => {
    const capture = await captureWebhooks();
    try {
      const secret = generateWebhookSecret();
      const event = testEvent({ topic: 'orders.created', key: 'Bestellung 7 "ü" 100%', tenant: 'Zürich', createdAt, payload: 1 });
      await sendOne(webhookTransport({ url: capture.server.url, secrets: [secret], addressPolicy: loopbackOnly, cloudEvents }), event);
      const request = await capture.next();
      expect(request.headers['ce-subject']).toBe('Bestellung%207%20%22%C3%BC%22%20100%25');
      expect(request.headers['ce-tidingstenant']).toBe('Z%C3%BCrich');
      expect(request.headers['ce-tidingsheaders']).toBeUndefined();

      const applied: WebhookMessage[] = [];
      const receiver = webhookReceiver({ secrets: secret, consumer: 'ce-hooks-2', schema, database: feed.outbox.db, handler: (_trx, message) => void applied.push(message) });
      expect((await receiver.handle({ method: 'POST', headers: request.headers, body: request.body })).status).toBe(200);
      expect(applied[0]).toMatchObject({ key: 'Bestellung 7 "ü" 100%', tenant: 'Zürich', headers: {}, payload: 1 });

      // The signature covers id, timestamp and body: a ce- header changed on the way still verifies (hence HTTPS).
      const fooled: WebhookMessage[] = [];
      const another = webhookReceiver({ secrets: secret, consumer: 'ce-hooks-3', schema, database: feed.outbox.db, handler: (_trx, message) => void fooled.push(message) });
      const altered = { ...request.headers, 'ce-tidingstenant': 'someone-else' };
      expect((await another.handle({ method: 'POST', headers: altered, body: request.body })).status).toBe(200);
      expect(fooled.map((message) => message.tenant)).toEqual(['someone-else']);
      // The body is signed: changing it is refused.
      expect((await another.handle({ method: 'POST', headers: request.headers, body: Buffer.from('2') })).status).toBe(401);
      await Promise.all([receiver.close(), another.close()]);
    } finally {
      await capture.close();
    }
  });

  it('are sent by the webhook dispatcher to its endpoints when it is given the option', async () => {
    await migrateWebhooks(feed.outbox.db, { schema: feed.outbox.schema, keyring: testKeyring });
    const capture = await captureWebhooks();
    const topic = unique('dispatch');
    const endpoints = webhookEndpoints({ schema: feed.outbox.schema, addressPolicy: loopbackOnly, keyring: testKeyring });
    const { secret } = await endpoints.create(feed.outbox.db, { url: capture.server.url, topics: [topic] });
    const heard: WebhookDispatcherEvent[] = [];
    const dispatcher = await startWebhookDispatcher({
      database: feed.outbox.db,
      schema: feed.outbox.schema,
      addressPolicy: loopbackOnly,
      keyring: testKeyring,
      cloudEvents,
      relay: { pollIntervalMs: 200 },
      onEvent: (event) => heard.push(event),
    });
    try {
      await waitUntil('the endpoint relay started', async () => heard.some((event) => event.type === 'endpoint-started'));
      const [event] = await feed.publish({ topic, key: 'order-9', payload: { n: 9 } });
      const request = await capture.next();
      expect(verifyWebhook(request.headers, request.body, secret).id).toBe(event!.eventId);
      const read = HTTP.toEvent({ headers: request.headers as Record<string, string>, body: request.body.toString('utf8') }) as CloudEvent<unknown>;
      expect(valid(read)).toEqual({
        specversion: '1.0',
        id: event!.eventId,
        source,
        type: topic,
        subject: 'order-9',
        time: event!.createdAt.toISOString(),
        datacontenttype: 'application/json',
        data: { n: 9 },
      });
    } finally {
      await dispatcher.stop();
      await capture.close();
    }
  });
});

describe('CloudEvents on the feeds (JSON event format, structured)', () => {
  let feed: FeedServer;
  let schema: string;
  const readers: SseReader[] = [];
  beforeAll(async () => {
    feed = await startFeedServer('ce_feed', { sse: { cloudEvents }, polling: { cloudEvents }, websocket: { cloudEvents } });
    schema = `t_ce_feed_${randomBytes(4).toString('hex')}`;
    await feed.outbox.db.query(`CREATE SCHEMA "${schema}"`);
    await migrateInbox(feed.outbox.db, { schema });
  });
  afterAll(async () => {
    for (const reader of readers) reader.close();
    await feed?.outbox.db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await feed?.close();
  });

  const publishFull = (topic: string) =>
    feed.publish([
      { topic, key: 'order-7', tenant: 'acme', payload, headers: { traceparent, tracestate, 'x-request-id': 'r-1' } },
      { topic, payload: null },
    ]);
  const structured = (text: string) => HTTP.toEvent({ headers: { 'content-type': 'application/cloudevents+json' }, body: text }) as CloudEvent<unknown>;
  const expectedOf = (event: OutboxEvent) => ({
    specversion: '1.0',
    id: event.eventId,
    source,
    type: event.topic,
    ...(event.key === null ? {} : { subject: event.key }),
    time: event.createdAt.toISOString(),
    datacontenttype: 'application/json',
    ...(event.headers.traceparent ? { traceparent, tracestate } : {}),
    ...(event.tenant === null ? {} : { tidingstenant: event.tenant }),
    tidingscursor: encodePosition(event.position),
    ...(event.headers['x-request-id'] ? { tidingsheaders: Buffer.from('{"x-request-id":"r-1"}').toString('base64') } : {}),
    // The SDK reads "data": null as no data.
    ...(event.payload === null ? {} : { data: event.payload }),
  });

  it('send each SSE data line as a structured CloudEvent, the id: line still the cursor', async () => {
    const topic = unique('sse');
    const published = await publishFull(topic);
    const reader = await openSse(`${feed.origin}/events?after=start&topics=${topic}`);
    readers.push(reader);
    await reader.waitFor(2);
    expect(reader.messages.map((m) => m.event)).toEqual([topic, topic]);
    expect(reader.messages.map((m) => m.lastEventId)).toEqual(published.map((e) => encodePosition(e.position)));
    expect(reader.messages.map((m) => valid(structured(m.data)))).toEqual(published.map(expectedOf));
  });

  it('answer polls with structured CloudEvents as the page items', async () => {
    const topic = unique('polling');
    const published = await publishFull(topic);
    const response = await fetch(`${feed.origin}/feed?after=start&topics=${topic}`);
    const page = (await response.json()) as { events: unknown[]; next: string; hasMore: boolean };
    expect(page.hasMore).toBe(false);
    expect(page.next).toMatch(/^c\d+-\d+$/);
    expect(page.events.map((item) => valid(structured(JSON.stringify(item))))).toEqual(published.map(expectedOf));
  });

  it('send each WebSocket event message with a structured CloudEvent as its event, the message cursor still the cursor', async () => {
    const topic = unique('websocket');
    const published = await publishFull(topic);
    const reader = await openWebSocketFeed(`${feed.wsOrigin}/ws`, { type: 'subscribe', after: 'start', topics: [topic] });
    try {
      await waitUntil('both event messages arrived', async () => reader.messages.filter((m) => m.type === 'event').length === 2);
      const events = reader.messages.filter((m) => m.type === 'event') as Array<{ cursor: string; event: unknown }>;
      expect(events.map((m) => m.cursor)).toEqual(published.map((e) => encodePosition(e.position)));
      expect(events.map((m) => valid(structured(JSON.stringify(m.event))))).toEqual(published.map(expectedOf));
    } finally {
      reader.socket.close();
    }
  });

  it.each(['sse', 'polling', 'websocket'] as const)('are read by the %s consumer as the events that were published', async (kind) => {
    const topic = unique(kind);
    const published = await publishFull(topic);
    const seen: ReceivedEvent<FeedDelivery>[] = [];
    const common = { from: 'start' as const, consumer: `ce-${topic}`, schema, database: feed.outbox.db, handler: (_trx: unknown, event: ReceivedEvent<FeedDelivery>) => void seen.push(event) };
    const consumer =
      kind === 'websocket'
        ? websocketConsumer({ ...common, url: `${feed.wsOrigin}/ws`, topics: [topic] })
        : (kind === 'sse' ? sseConsumer : pollingConsumer)({ ...common, url: `${feed.origin}${kind === 'sse' ? '/events' : '/feed'}?topics=${topic}` });
    await waitUntil('both events applied', async () => seen.length === 2);
    await consumer.close();
    expect(seen[0]).toMatchObject({ ...receivedFields(published[0]!), createdAt: published[0]!.createdAt });
    expect(seen[0]!.headers).toEqual(receivedFields(published[0]!).headers);
    expect(seen[1]).toMatchObject({ eventId: published[1]!.eventId, key: null, tenant: null, payload: null, headers: {} });
    expect(seen.map((e) => e.delivery.cursor)).toEqual(published.map((e) => encodePosition(e.position)));
  });
});

describe('the cloudEvents option', () => {
  const bad: Array<[unknown, string]> = [
    [{}, 'cloudEvents.source'],
    [{ source: '' }, 'cloudEvents.source'],
    [{ source: 'has space' }, 'cloudEvents.source'],
    [{ source: 42 }, 'cloudEvents.source'],
    [{ source: '/orders', sorce: '/orders' }, 'cloudEvents.sorce'],
    ['/orders', 'cloudEvents'],
    [true, 'cloudEvents'],
    [null, 'cloudEvents'],
  ];

  it('is refused with a ConfigError naming the field by every transport and feed, before anything connects or is sent', async () => {
    const capture = await captureWebhooks();
    try {
      const feedBase = { database: { query: async () => ({ rows: [] }), listen: async () => () => {} } as never, authorize: () => ({}) };
      const factories: Record<string, (value: unknown) => unknown> = {
        rabbitmq: (value) => rabbitmqTransport({ url: services.rabbitmq, cloudEvents: value as never }),
        kafka: (value) => kafkaTransport({ brokers: services.kafka, cloudEvents: value as never }),
        webhook: (value) => webhookTransport({ url: capture.server.url, secrets: [generateWebhookSecret()], addressPolicy: loopbackOnly, cloudEvents: value as never }),
        sse: (value) => sseFeed({ ...feedBase, cloudEvents: value as never }),
        polling: (value) => pollingFeed({ ...feedBase, cloudEvents: value as never }),
        websocket: (value) => websocketFeed({ ...feedBase, cloudEvents: value as never }),
      };
      for (const [name, make] of Object.entries(factories)) {
        for (const [value, option] of bad) {
          const error = (() => {
            try {
              make(value);
            } catch (thrown) {
              return thrown;
            }
            return undefined;
          })();
          expect(error, `${name} with ${JSON.stringify(value)}`).toBeInstanceOf(ConfigError);
          expect((error as ConfigError).option, `${name} with ${JSON.stringify(value)}`).toBe(option);
        }
      }
      await expect(startWebhookDispatcher({ database: feedBase.database, cloudEvents: { source: '' } })).rejects.toMatchObject({ name: 'ConfigError', option: 'cloudEvents.source' });
      expect(capture.requests).toEqual([]);
    } finally {
      await capture.close();
    }
  });
});
