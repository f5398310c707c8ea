/**
 * Kafka: relay worker processes produce through a fault proxy (every broker connection is routed
 * through it by a socket factory) to a topic of the run's own with two partitions. A plain consumer
 * group records every record in arrival order; `consumeKafka` applies them, its connections through
 * a second proxy, cut right after a database commit so the offset commit is lost and the records
 * come again. Variants per consumer mode, `inbox` (an inbox mark per event) and `checkpoint` (the
 * partition's next offset stored with the effects), and per consumer client library (kafkajs, or
 * @platformatic/kafka, whose connections reach the proxy by `connectTo`).
 */
import { consumeKafka, createKafkaClient, decodeRecord, type KafkaConsumer, type KafkaConsumerMode, type KafkaLibrary } from '@tidings/relays/kafka';
import type { Consumer, ISocketFactory } from 'kafkajs';
import net from 'node:net';
import pg from 'pg';
import { services } from '../../support/env.ts';
import { createTopicWhenReady, type FaultProxy } from '@tidings/relays/testing';
import { processFleet } from '../../support/property-fleet.ts';
import type { DestinationSpec } from '../destination.ts';
import type { Arrival } from '../history.ts';
import { applyEffect, readEffects } from '../inbox-consumer.ts';
import { kafkaProxy, postgresProxy } from '../proxies.ts';
import { oncePerRecord } from '../once-per-record.ts';

/** Routes every connection of a kafkajs client through `proxy`. */
function through(proxy: FaultProxy): ISocketFactory {
  return ({ onConnect }) => net.connect({ host: proxy.host, port: proxy.port }, onConnect);
}

function kafkaDestinationFor(mode: KafkaConsumerMode, library: KafkaLibrary = 'kafkajs'): DestinationSpec {
  const reach = (proxy: FaultProxy) =>
    library === 'platformatic'
      ? { client: { clientId: 'property-effects', connectTimeoutMs: 1_000, requestTimeoutMs: 5_000 }, connectTo: () => ({ host: proxy.host, port: proxy.port }) }
      : { client: { clientId: 'property-effects', logLevel: 'nothing' as const, connectTimeoutMs: 1_000, requestTimeoutMs: 5_000, socketFactory: through(proxy) } };
  return {
    name: `${mode === 'inbox' ? 'kafka' : 'kafka_checkpoint'}${library === 'kafkajs' ? '' : `_${library}`}`,
    ordered: true,
    // Kafka cases are the slowest of all: the two modes share about what inbox mode alone ran (4);
    // the second client library runs as many again.
    ciRuns: mode === 'inbox' ? 3 : 2,
    quietMs: 10_000,
    faults: ['crash-relay', 'pause-relay', 'join-relay', 'cut-broker', 'broker-outage', 'cut-relay-db', 'consumer-crash'],
    async create(context) {
      const { schema, topic } = context;
      const kafka = createKafkaClient({ brokers: services.kafka, clientId: 'property', logLevel: 'nothing' });
      const admin = kafka.admin();
      await admin.connect();
      await createTopicWhenReady(admin, { topic, numPartitions: 2, replicationFactor: 1 });

      const arrivals: Arrival[] = [];
      const recorder: Consumer = kafka.consumer({ groupId: `${topic}.arrivals`, sessionTimeout: 6_000, heartbeatInterval: 1_000 });
      await recorder.connect();
      await recorder.subscribe({ topics: [topic], fromBeginning: true });
      await recorder.run({
        eachMessage: async ({ topic: from, partition, message }) => {
          const event = decodeRecord(from, partition, message);
          arrivals.push({ eventId: event.eventId, key: event.key });
        },
      });

      const pool = new pg.Pool({ connectionString: services.postgres, max: 4 });
      pool.on('error', () => {});
      const consumerProxy = await kafkaProxy();
      let crashNext = 0;
      const errors: string[] = [];
      const consumer: KafkaConsumer = await consumeKafka({
        library,
        brokers: services.kafka,
        ...reach(consumerProxy),
        topics: [topic],
        consumer: 'property',
        groupId: `${topic}.effects`,
        mode,
        schema,
        database: pool,
        fromBeginning: true,
        batchSize: 20,
        sessionTimeoutMs: 6_000,
        heartbeatIntervalMs: 1_000,
        retry: { minDelayMs: 50, maxDelayMs: 500 },
        handler: (trx, event) => {
          const record = mode === 'checkpoint' ? `${event.delivery.partition}@${event.delivery.offset}` : undefined;
          const effect = { eventId: event.eventId, key: event.key, ...(record === undefined ? {} : { record }) };
          return context.swallower.handle(trx as pg.PoolClient, event, () => applyEffect(trx as pg.PoolClient, schema, effect));
        },
        onEvent: (event) => {
          if (event.type === 'committed' && crashNext > 0) {
            crashNext--;
            consumerProxy.cutAll(); // committed in the database; the offset commit never reaches Kafka
          }
          if (event.type === 'dead-lettered') errors.push(`the Kafka consumer dead-lettered ${event.eventId}: ${event.error.message}`);
        },
      });

      const broker = await kafkaProxy();
      const relayDb = await postgresProxy();
      return {
        fleet: processFleet({
          databaseUrl: relayDb.url,
          schema,
          relay: context.relay,
          leaseMs: context.leaseMs,
          transport: (workerId) => ({
            kind: 'kafka',
            options: {
              brokers: services.kafka,
              sendTimeoutMs: 5_000,
              client: { clientId: `property-${workerId}`, connectTimeoutMs: 1_000, requestTimeoutMs: 3_000, logLevel: 'nothing' },
            },
            proxyPort: broker.port,
          }),
        }),
        cutBroker: async () => broker.cutAll(),
        brokerDown: async () => {
          broker.refuseNew(true);
          broker.cutAll();
        },
        brokerUp: async () => broker.refuseNew(false),
        cutRelayDatabase: async () => relayDb.proxy.cutAll(),
        consumerCrash: async () => void crashNext++,
        heal: async () => broker.refuseNew(false),
        observe: async () => {
          const effects = await readEffects(pool, schema);
          return { arrivals: [...arrivals], effects: mode === 'checkpoint' ? oncePerRecord(effects) : effects };
        },
        problems: () => [...errors],
        async close() {
          await Promise.allSettled([consumer.close(), recorder.disconnect()]);
          await admin.deleteTopics({ topics: [topic] }).catch(() => {});
          await admin.disconnect();
          await Promise.all([broker.close(), consumerProxy.close(), relayDb.proxy.close()]);
          await pool.end();
        },
      };
    },
  };
}

/** `consumeKafka` in inbox mode. */
export const kafkaDestination = kafkaDestinationFor('inbox');
/** `consumeKafka` in checkpoint mode. */
export const kafkaCheckpointDestination = kafkaDestinationFor('checkpoint');
/** `consumeKafka` with @platformatic/kafka, in inbox mode. */
export const kafkaPlatformaticDestination = kafkaDestinationFor('inbox', 'platformatic');
/** `consumeKafka` with @platformatic/kafka, in checkpoint mode. */
export const kafkaPlatformaticCheckpointDestination = kafkaDestinationFor('checkpoint', 'platformatic');
