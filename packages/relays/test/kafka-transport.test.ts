import { ConfigError } from '@tidings/outbox';
import {
  createKafkaClient,
  KafkaEncodeError,
  kafkaHeaders,
  KafkaSendError,
  kafkaTransport,
  type KafkaProducerClient,
  type KafkaRecord,
  type KafkaTransportEvent,
} from '@tidings/relays/kafka';
import { testEvent, testEvents } from '@tidings/relays/testing';
import type { Admin, KafkaMessage } from 'kafkajs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { services } from '../../../test/support/env.ts';

const kafka = createKafkaClient({ brokers: services.kafka, logLevel: 'nothing' });
let admin: Admin;
const topics: string[] = [];
const quiet = { logLevel: 'nothing' as const };

beforeAll(async () => {
  admin = kafka.admin();
  await admin.connect();
});
afterAll(async () => {
  await admin.deleteTopics({ topics }).catch(() => {});
  await admin.disconnect();
});

async function newTopic(label: string, partitions = 3, config: Record<string, string> = {}): Promise<string> {
  const topic = `transport.${label}.${randomBytes(4).toString('hex')}`;
  const configEntries = Object.entries(config).map(([name, value]) => ({ name, value }));
  await admin.createTopics({ topics: [{ topic, numPartitions: partitions, configEntries }], waitForLeaders: true });
  topics.push(topic);
  return topic;
}

/** Every record of `topic` as kafkajs reads it, with its partition. */
async function readRaw(topic: string): Promise<(KafkaMessage & { partition: number })[]> {
  const total = (await admin.fetchTopicOffsets(topic)).reduce((sum, p) => sum + Number(p.high), 0);
  const records: (KafkaMessage & { partition: number })[] = [];
  const consumer = kafka.consumer({ groupId: `raw-${randomBytes(6).toString('hex')}`, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({ eachMessage: async ({ partition, message }) => void records.push({ ...message, partition }) });
  try {
    await waitUntil(`${total} records were read from ${topic}`, async () => records.length >= total);
  } finally {
    await consumer.disconnect();
  }
  return records;
}

const statuses = (outcomes: readonly { status: string }[]) => outcomes.map((o) => o.status);
const signal = () => AbortSignal.timeout(20_000);

describe.each(['kafkajs', 'platformatic'] as const)('the Kafka transport (with %s)', (library) => {
  it('writes an event as a record keyed by its key, its payload as JSON, and its id, topic, tenant, creation time and own headers as headers', async () => {
    const topic = await newTopic('record');
    const transport = kafkaTransport({ brokers: services.kafka, library, client: quiet });
    const event = testEvent({
      topic,
      key: 'order-7',
      tenant: 'acme',
      payload: { total: 42, lines: ['a', 'b'] },
      headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', tidings_event_id: 'spoofed' },
    });
    expect(statuses(await transport.send([event], signal()))).toEqual(['delivered']);
    await transport.close();

    const [record] = await readRaw(topic);
    expect(record!.key!.toString()).toBe('order-7');
    expect(JSON.parse(record!.value!.toString())).toEqual({ total: 42, lines: ['a', 'b'] });
    const headers = Object.fromEntries(Object.entries(record!.headers!).map(([name, value]) => [name, String(value)]));
    expect(headers).toEqual({
      [kafkaHeaders.eventId]: event.eventId,
      [kafkaHeaders.topic]: topic,
      [kafkaHeaders.tenant]: 'acme',
      [kafkaHeaders.createdAt]: event.createdAt.toISOString(),
      [kafkaHeaders.contentType]: 'application/json',
      [kafkaHeaders.wireVersion]: '1',
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      // An event header in tidings' own namespace is carried, escaped, and cannot pose as the id.
      [`${kafkaHeaders.escapedPrefix}tidings_event_id`]: 'spoofed',
    });
  });

  it('sends each event to the Kafka topic that the topic option names', async () => {
    const target = await newTopic('mapped');
    const transport = kafkaTransport({ brokers: services.kafka, library, client: quiet, topic: () => target });
    const events = testEvents(5, { topic: 'orders.created', key: 'k' });
    expect(statuses(await transport.send(events, signal()))).toEqual(Array(5).fill('delivered'));
    await transport.close();
    const records = await readRaw(target);
    expect(records.map((r) => String(r.headers![kafkaHeaders.eventId]))).toEqual(events.map((e) => e.eventId));
    expect(new Set(records.map((r) => String(r.headers![kafkaHeaders.topic])))).toEqual(new Set(['orders.created']));
  });

  it('reports an event Kafka cannot take as failed at once, sends the events before it, and leaves the ones after it for later', async () => {
    const topic = await newTopic('too-large', 1);
    const transport = kafkaTransport({ brokers: services.kafka, library, client: quiet, maxRecordBytes: 10_000 });
    const [before, after] = testEvents(2, { topic });
    const huge = testEvent({ topic, payload: 'x'.repeat(20_000) });
    const outcomes = await transport.send([before!, huge, after!], signal());
    expect(statuses(outcomes)).toEqual(['delivered', 'failed', 'retry']);
    expect(outcomes[1]).toMatchObject({ error: expect.any(KafkaEncodeError) });
    expect(outcomes[1]).toMatchObject({ error: { reason: 'too-large' } });

    const badName = kafkaTransport({ brokers: services.kafka, library, client: quiet, topic: () => 'no spaces/allowed' });
    const [bad] = await badName.send([testEvent({ topic })], signal());
    expect(bad).toMatchObject({ status: 'failed', error: { reason: 'invalid-topic' } });
    await Promise.all([transport.close(), badName.close()]);
    expect((await readRaw(topic)).map((r) => String(r.headers![kafkaHeaders.eventId]))).toEqual([before!.eventId]);
  });

  it('puts an event without a key in the partition its id hashes to, the same one whichever producer sends it, with kafkajs too', async () => {
    const topic = await newTopic('no-key', 6);
    const events = testEvents(30, { topic, key: null });
    for (const sender of ['kafkajs', library] as const) {
      const transport = kafkaTransport({ brokers: services.kafka, library: sender, client: quiet });
      expect(statuses(await transport.send(events, signal()))).toEqual(Array(30).fill('delivered'));
      await transport.close();
    }
    const partitionsById = new Map<string, Set<number>>();
    for (const record of await readRaw(topic)) {
      const id = String(record.headers![kafkaHeaders.eventId]);
      (partitionsById.get(id) ?? partitionsById.set(id, new Set()).get(id)!).add(record.partition);
      expect(record.key).toBeNull();
    }
    expect([...partitionsById.values()].every((partitions) => partitions.size === 1)).toBe(true);
    expect(new Set([...partitionsById.values()].map((p) => [...p][0])).size).toBeGreaterThan(1);
  });

  it('puts the events of a key in the partition the key hashes to, the same one as kafkajs puts them in', async () => {
    const topic = await newTopic('keyed', 7);
    const events = Array.from({ length: 20 }, (_, i) => testEvent({ topic, key: `customer-${i}` }));
    for (const sender of ['kafkajs', library] as const) {
      const transport = kafkaTransport({ brokers: services.kafka, library: sender, client: quiet });
      expect(statuses(await transport.send(events, signal()))).toEqual(Array(20).fill('delivered'));
      await transport.close();
    }
    const partitionsByKey = new Map<string, Set<number>>();
    for (const record of await readRaw(topic)) {
      const key = record.key!.toString();
      (partitionsByKey.get(key) ?? partitionsByKey.set(key, new Set()).get(key)!).add(record.partition);
    }
    expect(partitionsByKey.size).toBe(20);
    expect([...partitionsByKey.values()].every((partitions) => partitions.size === 1)).toBe(true);
    expect(new Set([...partitionsByKey.values()].map((p) => [...p][0])).size).toBeGreaterThan(1);
  });

  it('reports a record the broker refuses as too large as retry, not unavailable', async () => {
    const topic = await newTopic('broker-refuses', 1, { 'max.message.bytes': '2000' });
    const transport = kafkaTransport({ brokers: services.kafka, library, client: quiet });
    const [outcome] = await transport.send([testEvent({ topic, payload: 'z'.repeat(5_000) })], signal());
    await transport.close();
    expect(outcome).toMatchObject({ status: 'retry', error: expect.any(KafkaSendError) });
  });

  it('shares one request among the sends made while another is in flight, and splits a send larger than maxRequestBytes into requests in order', async () => {
    const topic = await newTopic('requests', 1);
    const transport = kafkaTransport({ brokers: services.kafka, library, client: quiet, maxRecordBytes: 20_000, maxRequestBytes: 20_000 });
    const batches = Array.from({ length: 20 }, () => testEvents(10, { topic, key: 'k' }));
    const outcomes = await Promise.all(batches.map((batch) => transport.send(batch, signal())));
    expect(outcomes.flat().every((o) => o.status === 'delivered')).toBe(true);
    const afterConcurrent = transport.stats().requests;
    expect(afterConcurrent).toBeLessThan(20);

    const large = testEvents(40, { topic, key: 'k', payload: (i) => ({ i, text: 'y'.repeat(1_500) }) });
    expect(statuses(await transport.send(large, signal()))).toEqual(Array(40).fill('delivered'));
    expect(transport.stats().requests - afterConcurrent).toBeGreaterThanOrEqual(3);
    await transport.close();
    const ids = (await readRaw(topic)).map((r) => String(r.headers![kafkaHeaders.eventId]));
    expect(ids.slice(-40)).toEqual(large.map((e) => e.eventId));
    expect(ids).toHaveLength(240);
  });
});

/** A client of the seam that fails, hangs or succeeds as told, recording what it was given. */
function scriptedClients(script: ('ok' | 'fail' | 'hang')[]) {
  const made: { records: KafkaRecord[][]; closed: boolean }[] = [];
  let call = 0;
  const factory = (): KafkaProducerClient => {
    const client = { records: [] as KafkaRecord[][], closed: false };
    made.push(client);
    return {
      async produce(records, abort) {
        client.records.push([...records]);
        const step = script[call++] ?? 'ok';
        if (step === 'fail') throw Object.assign(new Error('NOT_ENOUGH_REPLICAS'), { retriable: true });
        if (step === 'hang') await new Promise((_, reject) => abort.addEventListener('abort', () => reject(abort.reason)));
      },
      async close() {
        client.closed = true;
      },
    };
  };
  return { factory, made };
}

describe('the Kafka transport over its client seam', () => {
  it('reports a failed request as unavailable, never delivered, and sends the next one through a new client', async () => {
    const { factory, made } = scriptedClients(['fail', 'ok']);
    const seen: KafkaTransportEvent[] = [];
    const transport = kafkaTransport({ producer: factory, onEvent: (event) => seen.push(event) });
    const events = testEvents(3, { topic: 'orders', key: 'k' });

    const first = await transport.send(events, signal());
    expect(statuses(first)).toEqual(['unavailable', 'unavailable', 'unavailable']);
    expect(first[0]).toMatchObject({ error: expect.any(KafkaSendError) });
    expect(statuses(await transport.send(events, signal()))).toEqual(['delivered', 'delivered', 'delivered']);
    expect(made.map((client) => client.closed)).toEqual([true, false]);
    expect(seen.map((event) => event.type)).toEqual(['client-created', 'request-failed', 'client-created']);
    await transport.close();
    expect(made[1]!.closed).toBe(true);
  });

  it('reports and delivers the same when its observer throws', async () => {
    const { factory, made } = scriptedClients(['fail', 'ok']);
    const transport = kafkaTransport({
      producer: factory,
      onEvent: () => {
        throw new Error('observer bug');
      },
    });
    const events = testEvents(3, { topic: 'orders', key: 'k' });
    expect(statuses(await transport.send(events, signal()))).toEqual(['unavailable', 'unavailable', 'unavailable']);
    expect(statuses(await transport.send(events, signal()))).toEqual(['delivered', 'delivered', 'delivered']);
    expect(made).toHaveLength(2);
    await transport.close();
  });

  it('reports unavailable when Kafka does not acknowledge within sendTimeoutMs, and abandons that client', async () => {
    const { factory, made } = scriptedClients(['hang', 'ok']);
    const transport = kafkaTransport({ producer: factory, sendTimeoutMs: 200 });
    const started = Date.now();
    const outcomes = await transport.send(testEvents(2, { topic: 'orders' }), signal());
    expect(statuses(outcomes)).toEqual(['unavailable', 'unavailable']);
    expect(outcomes[0]).toMatchObject({ error: { reason: 'timeout' } });
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(statuses(await transport.send(testEvents(1, { topic: 'orders' }), signal()))).toEqual(['delivered']);
    expect(made).toHaveLength(2);
    await transport.close();
  });

  it('hands the client records with the event key, or the event id to hash when there is none', async () => {
    const { factory, made } = scriptedClients(['ok']);
    const transport = kafkaTransport({ producer: factory });
    const keyed = testEvent({ topic: 'orders', key: 'k-1' });
    const unkeyed = testEvent({ topic: 'orders' });
    await transport.send([keyed, unkeyed], signal());
    const [a, b] = made[0]!.records[0]!;
    expect([a!.key, a!.partitionKey]).toEqual(['k-1', 'k-1']);
    expect([b!.key, b!.partitionKey]).toEqual([null, unkeyed.eventId]);
    await transport.close();
  });

  it('refuses configuration it cannot use before sending anything', () => {
    expect(() => kafkaTransport({})).toThrow(ConfigError);
    expect(() => kafkaTransport({ brokers: ' , ' })).toThrow(/bootstrap broker/);
    expect(() => kafkaTransport({ brokers: 'localhost:9092', maxRecordBytes: 2_000, maxRequestBytes: 1_000 })).toThrow(/maxRequestBytes/);
    expect(() => kafkaTransport({ brokers: 'localhost:9092', sendTimeoutMs: 0 })).toThrow(/sendTimeoutMs/);
    expect(() => kafkaTransport({ brokers: 'localhost:9092', library: 'rdkafka' as 'kafkajs' })).toThrow(/library/);
    expect(() => kafkaTransport({ brokers: 'localhost:9092', library: 'platformatic', client: { kafkajs: {} } })).toThrow(/client\.kafkajs/);
  });
});

