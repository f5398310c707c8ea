import { migrateInbox } from '@tidings/inbox';
import { comparePositions, publish, type OutboxEvent } from '@tidings/outbox';
import {
  consumeKafka,
  createKafkaClient,
  kafkaHeaders,
  type ConsumeKafkaOptions,
  type KafkaConsumer,
  type KafkaConsumerEvent,
  type KafkaEvent,
} from '@tidings/relays/kafka';
import { createTopicWhenReady } from '@tidings/relays/testing';
import type { Admin, Kafka } from 'kafkajs';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { waitUntil } from './check.ts';
import { freshOutbox, inCommitOrder, inTransaction, type TestOutbox } from './db.ts';
import { services } from './env.ts';
import { startRelayWorker, startWorkerScript, testRelayTimings, type RelayWorkerConfig, type WorkerProcess } from './worker-process.ts';

/** One application of an effect, as the handlers record it. */
export interface EffectRow {
  readonly event_id: string;
  readonly key: string | null;
  readonly partition: number;
  readonly record_offset: string;
}

/** One record read back from a topic. */
export interface TopicRecord {
  readonly partition: number;
  readonly offset: bigint;
  readonly key: string | null;
  readonly eventId: string;
  /** The record's headers as text, tidings' own included. */
  readonly headers: Readonly<Record<string, string>>;
}

/** An outbox and an inbox in one fresh schema, the business table the handlers write to, and a Kafka admin. */
export interface KafkaWorld {
  readonly outbox: TestOutbox;
  readonly schema: string;
  readonly brokers: string;
  readonly kafka: Kafka;
  readonly admin: Admin;
  /** A topic no other test uses, created with `partitions` partitions. */
  topic(label: string, partitions?: number): Promise<string>;
  /** Every application of an effect by `consumer`, in order; no unique key, so a double apply shows. */
  effects(consumer: string): Promise<EffectRow[]>;
  /** Every record of `topic`, in offset order per partition. */
  readTopic(topic: string): Promise<TopicRecord[]>;
  close(): Promise<void>;
}

export async function kafkaWorld(label: string, brokers: string): Promise<KafkaWorld> {
  const outbox = await freshOutbox(label, { partitions: 4 });
  await migrateInbox(outbox.db, { schema: outbox.schema });
  await outbox.pool.query(`CREATE TABLE "${outbox.schema}".effects (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, consumer text NOT NULL, event_id text NOT NULL, key text,
    partition int, record_offset text
  )`);
  const kafka = createKafkaClient({ brokers, logLevel: 'nothing', connectTimeoutMs: 1_000 });
  const admin = kafka.admin();
  await admin.connect();
  const topics: string[] = [];
  return {
    outbox,
    schema: outbox.schema,
    brokers,
    kafka,
    admin,
    async topic(name, partitions = 4) {
      const topic = `${label}.${name}.${randomBytes(4).toString('hex')}`;
      await createTopicWhenReady(admin, { topic, numPartitions: partitions });
      topics.push(topic);
      return topic;
    },
    async effects(consumer) {
      const { rows } = await outbox.pool.query<EffectRow>(
        `SELECT event_id, key, partition, record_offset FROM "${outbox.schema}".effects WHERE consumer = $1 ORDER BY seq`,
        [consumer],
      );
      return rows;
    },
    async readTopic(topic) {
      const ends = await admin.fetchTopicOffsets(topic);
      const total = ends.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
      const records: TopicRecord[] = [];
      const consumer = kafka.consumer({ groupId: `reader-${randomBytes(6).toString('hex')}`, maxWaitTimeInMs: 100 });
      await consumer.connect();
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ partition, message }) => {
          const headers = Object.fromEntries(Object.entries(message.headers ?? {}).map(([name, value]) => [name, String(value)]));
          const key = message.key === null ? null : message.key.toString();
          const eventId = headers[kafkaHeaders.eventId] ?? `kafka:${topic}/${partition}@${message.offset}`;
          records.push({ partition, offset: BigInt(message.offset), key, eventId, headers });
        },
      });
      try {
        await waitUntil(`all ${total} records of ${topic} were read`, async () => records.length >= total, 30_000);
      } finally {
        await consumer.disconnect();
      }
      return records.sort((a, b) => a.partition - b.partition || (a.offset < b.offset ? -1 : 1));
    },
    async close() {
      await admin.deleteTopics({ topics }).catch(() => {});
      await admin.disconnect().catch(() => {});
      await outbox.close();
    },
  };
}

/**
 * `transactions` business transactions of `perTransaction` events over `keys` keys, run
 * `concurrency` at a time; every fifth rolls back. Returns the committed events in commit order
 * (as the relay reads them: by position).
 */
export async function runWorkload(
  world: KafkaWorld,
  topic: string,
  options: { transactions: number; perTransaction: number; keys?: number; concurrency?: number; pauseMs?: number },
): Promise<OutboxEvent[]> {
  const { transactions, perTransaction, keys = 7, concurrency = 1, pauseMs = 0 } = options;
  const committed: OutboxEvent[] = [];
  let next = 0;
  const writer = async (): Promise<void> => {
    for (let t = next++; t < transactions; t = next++) {
      const input = Array.from({ length: perTransaction }, (_, i) => ({ topic, key: `key-${(t * perTransaction + i) % keys}`, payload: { t, i } }));
      if (t % 5 === 4) {
        await inTransaction(world.outbox.pool, async (client) => {
          await publish(client, input, { schema: world.schema });
          throw new Error('rolled back on purpose');
        }).catch(() => {});
      } else {
        committed.push(...(await inTransaction(world.outbox.pool, (client) => publish(client, input, { schema: world.schema }))));
      }
      if (pauseMs > 0) await sleep(pauseMs);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, writer));
  return inCommitOrder(world.outbox.db, world.schema, committed);
}

export interface TestConsumer {
  readonly consumer: KafkaConsumer;
  readonly events: KafkaConsumerEvent[];
}

/** A consumer helper whose handler records each event in the effects table. */
export async function startEffectConsumer(
  world: KafkaWorld,
  options: {
    name: string;
    topics: (string | RegExp)[];
    /** Runs first in the handler: throw to fail the record, or wait to hold its transaction open. */
    before?: (event: KafkaEvent) => unknown;
  } & Partial<ConsumeKafkaOptions<pg.Pool>>,
): Promise<TestConsumer> {
  const events: KafkaConsumerEvent[] = [];
  const { name, before, ...rest } = options;
  const consumer = await consumeKafka({
    brokers: world.brokers,
    client: { logLevel: 'nothing', connectTimeoutMs: 1_000 },
    consumer: name,
    schema: world.schema,
    database: world.outbox.pool,
    sessionTimeoutMs: 6_000,
    heartbeatIntervalMs: 500,
    retry: { minDelayMs: 20, maxDelayMs: 200 },
    handler: async (client, event) => {
      await before?.(event);
      await client.query(`INSERT INTO "${world.schema}".effects (consumer, event_id, key, partition, record_offset) VALUES ($1, $2, $3, $4, $5)`, [
        name,
        event.eventId,
        event.key,
        event.delivery.partition,
        event.delivery.offset,
      ]);
    },
    onEvent: (event) => events.push(event),
    ...rest,
  });
  return { consumer, events };
}

/** Ids that occur more than once, with their counts. */
export function repeated(values: readonly string[]): Record<string, number> {
  const counts = new Map<string, number>();
  for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1);
  return Object.fromEntries([...counts].filter(([, n]) => n > 1));
}

const consumerWorkerScript = fileURLToPath(new URL('./kafka-consumer-worker.ts', import.meta.url));

/** A relay worker process (relay-worker.ts) relaying `topic` to Kafka; see relay-worker.ts for `crash`. */
export function startKafkaRelayWorker(
  name: string,
  options: { readonly brokers: string; readonly schema: string; readonly relay: string; readonly topic: string; readonly crash?: RelayWorkerConfig['crash'] },
): WorkerProcess {
  return startRelayWorker({
    databaseUrl: services.postgres,
    relay: {
      ...testRelayTimings,
      name: options.relay,
      schema: options.schema,
      topics: [options.topic],
      workerId: name,
      retry: { minDelayMs: 50, maxDelayMs: 500, retries: 1_000 },
    },
    transport: {
      kind: 'kafka',
      options: { brokers: options.brokers, sendTimeoutMs: 5_000, client: { logLevel: 'nothing', connectTimeoutMs: 1_000, requestTimeoutMs: 5_000 } },
    },
    crash: options.crash,
    omit: [],
  });
}

/** The Kafka consumer worker (kafka-consumer-worker.ts) as its own process, configured by `env` as that script says. */
export function startKafkaConsumerWorker(name: string, env: Record<string, string>): WorkerProcess {
  return startWorkerScript(consumerWorkerScript, name, { env: { DATABASE_URL: services.postgres, TIDINGS_WORKER: name, ...env } });
}
