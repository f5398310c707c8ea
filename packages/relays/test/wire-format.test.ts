import { encodePosition, type OutboxEvent } from '@tidings/outbox';
import { kafkaTransport, wireVersion } from '@tidings/relays/kafka';
import { rabbitmqTransport } from '@tidings/relays/rabbitmq';
import { loopbackOnly, openSse, pollFeed, testEvent, type SseReader } from '@tidings/relays/testing';
import { generateWebhookSecret, webhookTransport } from '@tidings/relays/webhook';
import { createHmac, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { services } from '../../../test/support/env.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';
import { shareBrokerPerTest } from '../../../test/support/rabbitmq-broker-lock.ts';
import { captureAmqp, captureKafka, captureWebhooks, kafkaHeaderText, sendOne } from '../../../test/support/wire-capture.ts';

/**
 * The README's "Wire format" tables, checked against what each transport actually sent through a
 * real broker or server, read with plain protocol clients (amqplib, kafkajs, node:http).
 */

const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const tracestate = 'vendor=abc';
const createdAt = new Date('2026-01-31T12:00:00.123Z');
const unique = (label: string): string => `wire.${label}.${randomBytes(4).toString('hex')}`;

/** An event with every field set, and headers that collide with names the transports use themselves. */
function fullEvent(topic: string, headers: Record<string, string> = {}): OutboxEvent {
  return testEvent({
    topic,
    key: 'order-7',
    tenant: 'acme',
    createdAt,
    payload: { id: 'order-7', total: 42.5, lines: ['a', 'ü'] },
    headers: { traceparent, tracestate, 'x-request-id': 'r-1', ...headers },
  });
}

describe('the AMQP message (RabbitMQ)', () => {
  shareBrokerPerTest();

  it('is published to the tidings exchange with the topic as routing key, the documented properties, headers and a JSON body', async () => {
    const topic = unique('amqp');
    const capture = await captureAmqp(topic);
    try {
      const event = fullEvent(topic, { 'x-tidings-key': 'spoofed', CC: 'elsewhere', 'cloudEvents:id': 'not-an-attribute' });
      await sendOne(rabbitmqTransport({ url: services.rabbitmq }), event);
      const message = await capture.next();

      expect(message.fields).toMatchObject({ exchange: 'tidings', routingKey: topic });
      expect(message.properties).toMatchObject({
        messageId: event.eventId,
        type: topic,
        contentType: 'application/json',
        timestamp: Math.floor(createdAt.getTime() / 1000),
        deliveryMode: 2,
      });
      expect(message.properties.headers).toEqual({
        traceparent,
        tracestate,
        'x-request-id': 'r-1',
        'x-tidings-key': 'order-7',
        'x-tidings-tenant': 'acme',
        'x-tidings-created-at': '2026-01-31T12:00:00.123Z',
        'x-tidings-wire-version': '1',
        // Names tidings, the broker or CloudEvents interpret travel escaped.
        'x-tidings-header:x-tidings-key': 'spoofed',
        'x-tidings-header:CC': 'elsewhere',
        'x-tidings-header:cloudEvents:id': 'not-an-attribute',
      });
      expect(message.content.toString('utf8')).toBe('{"id":"order-7","total":42.5,"lines":["a","ü"]}');
    } finally {
      await capture.close();
    }
  });

  it('leaves out the key and tenant headers of an event that has none', async () => {
    const topic = unique('amqp-bare');
    const capture = await captureAmqp(topic);
    try {
      const event = testEvent({ topic, createdAt, payload: null });
      await sendOne(rabbitmqTransport({ url: services.rabbitmq }), event);
      const message = await capture.next();
      expect(message.properties.headers).toEqual({ 'x-tidings-created-at': '2026-01-31T12:00:00.123Z', 'x-tidings-wire-version': '1' });
      expect(message.content.toString('utf8')).toBe('null');
    } finally {
      await capture.close();
    }
  });
});

describe.each(['kafkajs', 'platformatic'] as const)('the Kafka record (written with %s)', (library) => {
  it('has the event key as key, the payload as JSON value, and the documented headers', async () => {
    const capture = await captureKafka('record');
    try {
      const event = fullEvent(capture.topic, { tidings_event_id: 'spoofed', 'content-type': 'text/plain', ce_id: 'not-an-attribute' });
      await sendOne(kafkaTransport({ brokers: services.kafka, library, client: { logLevel: 'nothing' } }), event);
      const [record] = await capture.records(1);

      expect(record!.key!.toString('utf8')).toBe('order-7');
      expect(record!.value!.toString('utf8')).toBe('{"id":"order-7","total":42.5,"lines":["a","ü"]}');
      expect(kafkaHeaderText(record!)).toEqual({
        traceparent,
        tracestate,
        'x-request-id': 'r-1',
        tidings_event_id: event.eventId,
        tidings_topic: capture.topic,
        tidings_tenant: 'acme',
        tidings_created_at: '2026-01-31T12:00:00.123Z',
        tidings_wire_version: wireVersion,
        'content-type': 'application/json',
        'tidings_header:tidings_event_id': 'spoofed',
        'tidings_header:content-type': 'text/plain',
        'tidings_header:ce_id': 'not-an-attribute',
      });
    } finally {
      await capture.close();
    }
  });

  it('has a null key and no tenant header for an event without them', async () => {
    const capture = await captureKafka('bare');
    try {
      const event = testEvent({ topic: capture.topic, createdAt, payload: [1] });
      await sendOne(kafkaTransport({ brokers: services.kafka, library, client: { logLevel: 'nothing' } }), event);
      const [record] = await capture.records(1);
      expect(record!.key).toBeNull();
      expect(kafkaHeaderText(record!)).toEqual({
        tidings_event_id: event.eventId,
        tidings_topic: capture.topic,
        tidings_created_at: '2026-01-31T12:00:00.123Z',
        tidings_wire_version: '1',
        'content-type': 'application/json',
      });
    } finally {
      await capture.close();
    }
  });
});

describe('the Kafka record of each client library', () => {
  it('is the same: key, value and headers byte for byte, headers in the same order', async () => {
    const capture = await captureKafka('libraries');
    try {
      const event = fullEvent(capture.topic, { tidings_event_id: 'spoofed', 'x-ünïcode': 'välue' });
      for (const library of ['kafkajs', 'platformatic'] as const) {
        await sendOne(kafkaTransport({ brokers: services.kafka, library, client: { logLevel: 'nothing' } }), event);
      }
      const [fromKafkajs, fromPlatformatic] = (await capture.records(2)).map((record) => ({
        key: record.key,
        value: record.value,
        headers: Object.entries(record.headers ?? {}),
      }));
      expect(fromPlatformatic).toEqual(fromKafkajs);
      expect(fromKafkajs!.headers.map(([name]) => name)).toContain('tidings_header:tidings_event_id');
    } finally {
      await capture.close();
    }
  });
});

describe('the webhook request', () => {
  it('is a POST with the Standard Webhooks headers, the wire version and the JSON envelope as body', async () => {
    const capture = await captureWebhooks();
    try {
      const secret = generateWebhookSecret();
      const event = fullEvent('orders.created');
      const before = Math.floor(Date.now() / 1000);
      await sendOne(webhookTransport({ url: `${new URL(capture.server.url).origin}/in?x=1`, secrets: [secret], addressPolicy: loopbackOnly }), event);
      const request = await capture.next();

      expect(request.method).toBe('POST');
      expect(request.url).toBe('/in?x=1');
      const body = request.body.toString('utf8');
      expect(body).toBe(
        `{"id":"${event.eventId}","topic":"orders.created","key":"order-7","tenant":"acme","createdAt":"2026-01-31T12:00:00.123Z",` +
          `"headers":{"traceparent":"${traceparent}","tracestate":"${tracestate}","x-request-id":"r-1"},"payload":{"id":"order-7","total":42.5,"lines":["a","ü"]}}`,
      );
      const stamp = Number(request.headers['webhook-timestamp']);
      expect(stamp).toBeGreaterThanOrEqual(before);
      expect(stamp).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
      expect(request.headers).toMatchObject({
        'content-type': 'application/json',
        'content-length': String(request.body.length),
        'user-agent': 'tidings-webhooks/1',
        'webhook-id': event.eventId,
        'tidings-wire-version': '1',
        traceparent,
        tracestate,
      });
      // The signature as a receiver in any language computes it: HMAC-SHA256 keyed by the secret's base64 bytes.
      const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
      const mac = createHmac('sha256', key).update(`${event.eventId}.${stamp}.`).update(request.body).digest('base64');
      expect(request.headers['webhook-signature']).toBe(`v1,${mac}`);
      const tidingsHeaders = Object.keys(request.headers).filter((name) => !['host', 'connection'].includes(name)).sort();
      expect(tidingsHeaders).toEqual(
        ['content-length', 'content-type', 'tidings-wire-version', 'traceparent', 'tracestate', 'user-agent', 'webhook-id', 'webhook-signature', 'webhook-timestamp'],
      );
    } finally {
      await capture.close();
    }
  });

  it('signs with every secret during a rotation, space-separated', async () => {
    const capture = await captureWebhooks();
    try {
      const secrets = [generateWebhookSecret(), generateWebhookSecret()];
      const event = testEvent({ topic: 'orders.created', createdAt });
      await sendOne(webhookTransport({ url: capture.server.url, secrets, addressPolicy: loopbackOnly }), event);
      const request = await capture.next();
      const stamp = request.headers['webhook-timestamp'];
      const expected = secrets.map((secret) => {
        const mac = createHmac('sha256', Buffer.from(secret.slice(6), 'base64')).update(`${event.eventId}.${stamp}.`).update(request.body).digest('base64');
        return `v1,${mac}`;
      });
      expect(request.headers['webhook-signature']).toBe(expected.join(' '));
      expect(JSON.parse(request.body.toString('utf8'))).toEqual({
        id: event.eventId,
        topic: 'orders.created',
        key: null,
        tenant: null,
        createdAt: '2026-01-31T12:00:00.123Z',
        headers: {},
        payload: event.payload,
      });
    } finally {
      await capture.close();
    }
  });
});

describe('the feeds', () => {
  let feed: FeedServer;
  const readers: SseReader[] = [];
  beforeAll(async () => {
    feed = await startFeedServer('wire', { sse: { retryMs: 2_500 } });
  });
  afterAll(async () => {
    for (const reader of readers) reader.close();
    await feed?.close();
  });

  const publishFull = (topic: string) =>
    feed.publish([
      { topic, key: 'order-7', tenant: 'acme', payload: { id: 'order-7', text: 'line\nbreak' }, headers: { traceparent, 'x-request-id': 'r-1' } },
      { topic, payload: 3 },
    ]);
  /** The envelope's text, field by field in the documented order. */
  const envelopeText = (event: OutboxEvent): string =>
    `{"cursor":"${encodePosition(event.position)}","eventId":"${event.eventId}","topic":"${event.topic}","key":${JSON.stringify(event.key)},` +
    `"tenant":${JSON.stringify(event.tenant)},"payload":${JSON.stringify(event.payload)},"headers":${JSON.stringify(event.headers)},` +
    `"createdAt":"${event.createdAt.toISOString()}"}`;

  it('stream SSE frames: retry and a comment first, then id = cursor, event = topic, data = the envelope on one line', async () => {
    const topic = unique('sse');
    const published = await publishFull(topic);
    const reader = await openSse(`${feed.origin}/events?after=start&topics=${topic}`);
    readers.push(reader);
    await reader.waitFor(2);
    expect(reader.status).toBe(200);
    expect(reader.headers).toMatchObject({
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'tidings-wire-version': '1',
    });
    expect(reader.raw).toBe(
      'retry: 2500\n: connected\n\n' + published.map((event) => `id: ${encodePosition(event.position)}\nevent: ${topic}\ndata: ${envelopeText(event)}\n\n`).join(''),
    );
    expect(Object.keys(reader.events[0]!)).toEqual(['cursor', 'eventId', 'topic', 'key', 'tenant', 'payload', 'headers', 'createdAt']);
  });

  it('answer polls with { events, next, hasMore }, the same envelopes, a weak ETag and the wire version', async () => {
    const topic = unique('polling');
    const published = await publishFull(topic);
    const url = `${feed.origin}/feed?after=start&topics=${topic}&limit=1`;
    const first = await fetch(url);
    const text = await first.text();
    expect(first.status).toBe(200);
    expect(first.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(first.headers.get('cache-control')).toBe('no-cache');
    expect(first.headers.get('tidings-wire-version')).toBe('1');
    expect(first.headers.get('etag')).toMatch(/^W\/"[\w-]+"$/);
    const page = JSON.parse(text) as { next: string };
    expect(text).toBe(`{"events":[${envelopeText(published[0]!)}],"next":${JSON.stringify(page.next)},"hasMore":true}`);
    expect(page.next).toBe(encodePosition(published[0]!.position));

    const second = await pollFeed(`${feed.origin}/feed`, { after: page.next, topics: topic });
    expect(second.body.events.map((e) => e.eventId)).toEqual([published[1]!.eventId]);
    expect(second.body.hasMore).toBe(false);
    const again = await fetch(`${feed.origin}/feed?after=${page.next}&topics=${topic}`, { headers: { 'if-none-match': second.headers.get('etag')! } });
    expect(again.status).toBe(304);
    expect(again.headers.get('tidings-wire-version')).toBe('1');
  });
});
