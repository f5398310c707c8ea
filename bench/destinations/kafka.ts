import { randomBytes } from 'node:crypto';
import kafkajs, { type Message, type Producer } from 'kafkajs';
import type { OutboxEvent } from '@tidings/outbox';
import { kafkaTransport, encodeEvent } from '@tidings/relays/kafka';
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
      const single = singleRequestSender(open, topic);
      return {
        transport: () => kafkaTransport({ brokers, topic: () => topic, client: { clientId: 'tidings-bench', logLevel: 'nothing' } }),
        publishOne: (event) => single(event),
        async direct(lanes) {
          await open();
          // The client at its best with one request in flight: as many records per request as fit
          // in the transport's request limit, taken from every partition's lane in turn.
          let request: Message[] = [];
          let bytes = 0;
          const flush = async () => {
            if (request.length > 0) await producer!.sendBatch({ acks: -1, topicMessages: [{ topic, messages: request }] });
            request = [];
            bytes = 0;
          };
          for (const event of interleave(lanes, batchSize)) {
            const record = encodeEvent(event, topic, maxRecordBytes);
            const size = record.bytes;
            if (bytes + size > maxRequestBytes) await flush();
            request.push({ key: record.key, value: record.value, headers: { ...record.headers } });
            bytes += size;
          }
          await flush();
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
 * event that arrived meanwhile (a producer that does not linger). Resolves at the event's acks=all.
 */
function singleRequestSender(open: () => Promise<Producer>, topic: string): (event: OutboxEvent) => Promise<void> {
  let waiting: { message: Message; done: (error?: Error) => void }[] = [];
  let busy = false;
  const pump = async (): Promise<void> => {
    busy = true;
    while (waiting.length > 0) {
      const request = waiting;
      waiting = [];
      const error = await open()
        .then((producer) => producer.sendBatch({ acks: -1, topicMessages: [{ topic, messages: request.map((w) => w.message) }] }))
        .then(() => undefined, (e: Error) => e);
      for (const w of request) w.done(error);
    }
    busy = false;
  };
  return (event) =>
    new Promise<void>((resolve, reject) => {
      const record = encodeEvent(event, topic, maxRecordBytes);
      waiting.push({ message: { key: record.key, value: record.value, headers: { ...record.headers } }, done: (error) => (error ? reject(error) : resolve()) });
      if (!busy) void pump();
    });
}

/** The lanes' events, `batchSize` from each lane in turn, each lane in its own order. */
function* interleave(lanes: readonly (readonly OutboxEvent[])[], batchSize: number): Generator<OutboxEvent> {
  for (let offset = 0; lanes.some((lane) => lane.length > offset); offset += batchSize) {
    for (const lane of lanes) yield* lane.slice(offset, offset + batchSize);
  }
}
