import { randomBytes } from 'node:crypto';
import { ProduceAcks, Producer as PlatformaticProducer, stringSerializer, type MessageToProduce } from '@platformatic/kafka';
import kafkajs, { type Message, type Producer } from 'kafkajs';
import type { OutboxEvent } from '@tidings/outbox';
import { kafkaTransport, encodeEvent, platformaticKafkaProducer, type EncodedRecord } from '@tidings/relays/kafka';
import { createTopicWhenReady } from '@tidings/relays/testing';
import type { Destination, Target } from './destination.ts';

const { Kafka, logLevel, Partitioners } = kafkajs;

/** Kafka partitions of every bench topic. */
const topicPartitions = 16;
const maxRecordBytes = 1_048_000;
/** The transport's default request limit. */
const maxRequestBytes = 1_048_000;

/**
 * Kafka: each target is a new topic. Direct: a kafkajs idempotent producer (acks all, one request
 * in flight) sending the same records as the transport encodes, packed into requests of up to the
 * transport's request limit, `batchSize` events from each partition's lane in turn — as the
 * transport packs the batches of concurrent partitions. `publishOne`: the same producer, one
 * request in flight, each request carrying the events sent while the one before was out.
 */
export async function kafkaDestination(brokers: string, batchSize: number): Promise<Destination> {
  const kafka = new Kafka({ brokers: brokers.split(','), clientId: 'tidings-bench', logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  return {
    name: 'kafka',
    async target() {
      const topic = `bench-${randomBytes(4).toString('hex')}`;
      await createTopicWhenReady(admin, { topic, numPartitions: topicPartitions, replicationFactor: 1 });
      let producer: Producer | undefined;
      let connecting: Promise<Producer> | undefined;
      const open = () =>
        (connecting ??= (async () => {
          producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
          await producer.connect();
          return producer;
        })());
      const kafkajsMessages = (records: EncodedRecord[]): Message[] => records.map((record) => ({ key: record.key, value: record.value, headers: { ...record.headers } }));
      const single = singleRequestSender(topic, async (records) =>
        (await open()).sendBatch({ acks: -1, topicMessages: [{ topic, messages: kafkajsMessages(records) }] }),
      );
      return {
        transport: () => kafkaTransport({ brokers, topic: () => topic, client: { clientId: 'tidings-bench', logLevel: 'nothing' } }),
        publishOne: (event) => single(event),
        async direct(lanes) {
          await open();
          await inRequests(lanes, batchSize, topic, (records) =>
            producer!.sendBatch({ acks: -1, topicMessages: [{ topic, messages: kafkajsMessages(records) }] }),
          );
        },
        async dispose() {
          await producer?.disconnect();
          await admin.deleteTopics({ topics: [topic] }).catch(() => {});
        },
      } satisfies Target;
    },
    async close() {
      await admin.disconnect();
    },
  };
}

/**
 * One event at a time as a service would send it with the client alone, one request in flight:
 * an event sent while a request is out waits for it and goes in the next request with every other
 * event that arrived meanwhile (a producer that does not linger). `send` sends one request and
 * resolves at its acks=all.
 */
function singleRequestSender(topic: string, send: (records: EncodedRecord[]) => Promise<unknown>): (event: OutboxEvent) => Promise<void> {
  let waiting: { record: EncodedRecord; done: (error?: Error) => void }[] = [];
  let busy = false;
  const pump = async (): Promise<void> => {
    busy = true;
    while (waiting.length > 0) {
      const request = waiting;
      waiting = [];
      const error = await send(request.map((w) => w.record)).then(() => undefined, (e: Error) => e);
      for (const w of request) w.done(error);
    }
    busy = false;
  };
  return (event) =>
    new Promise<void>((resolve, reject) => {
      waiting.push({ record: encodeEvent(event, topic, maxRecordBytes), done: (error) => (error ? reject(error) : resolve()) });
      if (!busy) void pump();
    });
}

/**
 * The client at its best with one request in flight: as many records per request as fit in the
 * transport's request limit, `batchSize` events from every partition's lane in turn; `send` sends
 * one request and resolves at its acknowledgement.
 */
async function inRequests(lanes: readonly (readonly OutboxEvent[])[], batchSize: number, topic: string, send: (records: EncodedRecord[]) => Promise<unknown>): Promise<void> {
  let request: EncodedRecord[] = [];
  let bytes = 0;
  for (const event of interleave(lanes, batchSize)) {
    const record = encodeEvent(event, topic, maxRecordBytes);
    if (bytes + record.bytes > maxRequestBytes && request.length > 0) {
      await send(request);
      request = [];
      bytes = 0;
    }
    request.push(record);
    bytes += record.bytes;
  }
  if (request.length > 0) await send(request);
}

/** The lanes' events, `batchSize` from each lane in turn, each lane in its own order. */
function* interleave(lanes: readonly (readonly OutboxEvent[])[], batchSize: number): Generator<OutboxEvent> {
  for (let offset = 0; lanes.some((lane) => lane.length > offset); offset += batchSize) {
    for (const lane of lanes) yield* lane.slice(offset, offset + batchSize);
  }
}

/**
 * Kafka through @platformatic/kafka: the transport with `platformaticKafkaProducer`, against that
 * library's own idempotent producer (acks all, the transport's settings) sending the same records:
 * `direct` in requests of up to the transport's request limit, lane by lane in turn as above;
 * `publishOne` one request at a time with whatever arrived while the one before was out.
 */
export async function platformaticKafkaDestination(brokers: string, batchSize: number): Promise<Destination> {
  const kafka = new Kafka({ brokers: brokers.split(','), clientId: 'tidings-bench', logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const bootstrapBrokers = brokers.split(',').map((address) => {
    const at = address.lastIndexOf(':');
    return { host: address.slice(0, at), port: Number(address.slice(at + 1)) };
  });
  return {
    name: 'kafka_platformatic',
    async target() {
      const topic = `bench-${randomBytes(4).toString('hex')}`;
      await createTopicWhenReady(admin, { topic, numPartitions: topicPartitions, replicationFactor: 1 });
      const producer = new PlatformaticProducer<Buffer, Buffer, string, string>({
        clientId: 'tidings-bench',
        bootstrapBrokers,
        idempotent: true,
        acks: ProduceAcks.ALL,
        serializers: { headerKey: stringSerializer, headerValue: stringSerializer },
      });
      const message = (record: EncodedRecord): MessageToProduce<Buffer, Buffer, string, string> => ({
        topic,
        ...(record.key === null ? {} : { key: Buffer.from(record.key) }),
        value: record.value,
        headers: { ...record.headers } as Record<string, string>,
      });
      const single = singleRequestSender(topic, (records) => producer.send({ messages: records.map(message) }));
      return {
        transport: () => kafkaTransport({ topic: () => topic, producer: platformaticKafkaProducer({ brokers, clientId: 'tidings-bench' }) }),
        publishOne: (event) => single(event),
        async direct(lanes) {
          await inRequests(lanes, batchSize, topic, (records) => producer.send({ messages: records.map(message) }));
        },
        async dispose() {
          await producer.close(true).catch(() => {});
          await admin.deleteTopics({ topics: [topic] }).catch(() => {});
        },
      } satisfies Target;
    },
    async close() {
      await admin.disconnect();
    },
  };
}
