import { consumeKafka, kafkaTransport, type KafkaConsumerEvent, type KafkaLibrary } from '@tidings/relays/kafka';
import { kafkaHarness, type ConsumerHarness } from '@tidings/relays/testing';
import type pg from 'pg';
import { services } from './env.ts';
import { transportDelivery } from './transport-delivery.ts';
import { kafkaWorld } from './kafka-world.ts';

/**
 * consumeKafka (inbox mode, with a dead-letter topic) with the client `library`, over the real
 * broker, fed by tidings' Kafka transport. The consumer reaches the broker through a TCP fault
 * proxy (kafkajs: a socket factory; @platformatic/kafka: `connectTo`); a crash is its connections
 * cut right after the database commit, before the offset commit that follows it.
 */
export async function kafkaConsumerHarness(library: KafkaLibrary): Promise<ConsumerHarness> {
  const world = await kafkaWorld('kafka_conformance', services.kafka);
  const faults = await kafkaHarness({ brokers: services.kafka });
  const transport = kafkaTransport({ brokers: services.kafka, client: { logLevel: 'nothing' } });
  return {
    database: world.outbox.pool,
    schema: world.schema,
    configure: (overrides) =>
      consumeKafka({ library, brokers: 'nowhere.invalid:9092', topics: ['t'], consumer: 'c', database: world.outbox.pool, handler: () => {}, ...overrides }),
    async start(run) {
      const topic = await world.topic('events', 3);
      const deadLetterTopic = await world.topic('dead', 1);
      let crashes = 0;
      const reach =
        library === 'platformatic'
          ? { client: { connectTimeoutMs: 1_000, requestTimeoutMs: 10_000 }, connectTo: () => ({ host: faults.proxy.host, port: faults.proxy.port }) }
          : { client: { ...faults.proxiedClient, connectTimeoutMs: 1_000 } };
      const consumer = await consumeKafka({
        library,
        brokers: services.kafka,
        ...reach,
        topics: [topic],
        consumer: run.consumer,
        schema: world.schema,
        database: world.outbox.pool,
        deadLetterTopic,
        sessionTimeoutMs: 6_000,
        heartbeatIntervalMs: 500,
        retry: run.retry,
        handler: (trx: pg.PoolClient, event) => run.handler(trx, event),
        onEvent: (event: KafkaConsumerEvent) => {
          if (run.crashAfterFirstCommit && crashes === 0 && event.type === 'committed' && event.applied > 0) {
            crashes++;
            faults.proxy.cutAll();
          }
          run.onEvent(event);
        },
      });
      return {
        ...transportDelivery(transport, topic),
        consumer,
        get crashes() {
          return crashes;
        },
        async pending() {
          // Records after the group's committed offset, per partition.
          const ends = await world.admin.fetchTopicOffsets(topic);
          const [committed] = await world.admin.fetchOffsets({ groupId: run.consumer, topics: [topic] });
          const offsetOf = new Map(committed!.partitions.map((p) => [p.partition, Number(p.offset)]));
          return ends.reduce((sum, end) => {
            const at = offsetOf.get(end.partition) ?? -1;
            return sum + Number(end.high) - (at < 0 ? Number(end.low) : at);
          }, 0);
        },
        async deadLettered() {
          const ends = await world.admin.fetchTopicOffsets(deadLetterTopic);
          if (ends.every((end) => end.high === end.low)) return [];
          return (await world.readTopic(deadLetterTopic)).map((record) => record.eventId);
        },
        close: () => consumer.close(),
      };
    },
    async close() {
      await transport.close();
      await faults.close();
      await world.close();
    },
  };
}
