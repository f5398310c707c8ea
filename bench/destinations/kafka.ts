import { randomBytes } from 'node:crypto';
import kafkajs, { type Producer } from 'kafkajs';
import { kafkaTransport, encodeEvent } from '@tidings/relays/kafka';
import type { Destination, Target } from './destination.ts';

const { Kafka, logLevel, Partitioners } = kafkajs;

/** Kafka partitions of every bench topic. */
const topicPartitions = 16;
const maxRecordBytes = 1_048_000;

/**
 * Kafka: each target is a new topic. Direct: a kafkajs idempotent producer (acks all, one request
 * in flight) sending the same records as the transport encodes, in the relay's batches — each
 * partition's events `batchSize` at a time, one `sendBatch` after another.
 */
export async function kafkaDestination(brokers: string, batchSize: number): Promise<Destination> {
  const kafka = new Kafka({ brokers: brokers.split(','), clientId: 'tidings-bench', logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  return {
    name: 'kafka',
    async target() {
      const topic = `bench-${randomBytes(4).toString('hex')}`;
      await admin.createTopics({ topics: [{ topic, numPartitions: topicPartitions, replicationFactor: 1 }], waitForLeaders: true });
      let producer: Producer | undefined;
      return {
        transport: () => kafkaTransport({ brokers, topic: () => topic, client: { clientId: 'tidings-bench', logLevel: 'nothing' } }),
        async direct(lanes) {
          if (!producer) {
            producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
            await producer.connect();
          }
          for (const lane of lanes) {
            for (let i = 0; i < lane.length; i += batchSize) {
              const messages = lane.slice(i, i + batchSize).map((event) => {
                const record = encodeEvent(event, topic, maxRecordBytes);
                return { key: record.key, value: record.value, headers: { ...record.headers } };
              });
              await producer.sendBatch({ acks: -1, topicMessages: [{ topic, messages }] });
            }
          }
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
