import { migrateInbox } from '@tidings/inbox';
import type { Json } from '@tidings/outbox';
import { consumeKafka, createKafkaClient, kafkaTransport, type KafkaLibrary } from '@tidings/relays/kafka';
import { createTopicWhenReady, testEvents } from '@tidings/relays/testing';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { benchOutbox, databaseUrl, median, medianRatio, orderPayload, progress, sideBySide, waitFor } from '../support.ts';

export interface ConsumeKafkaPlan {
  /** Records in the topic, drained once per round by each client. */
  readonly events: number;
  readonly partitions: number;
  /** Records per database transaction (consumeKafka's `batchSize`). */
  readonly batchSize: number;
  readonly rounds: number;
}

export interface ConsumeKafkaResult {
  readonly kafkajs_events_per_s: number;
  readonly platformatic_events_per_s: number;
  /** @platformatic/kafka's drain rate over kafkajs's, the median of the per-round ratios. */
  readonly platformatic_ratio: number;
  /** Records per database transaction: how many records each client's fetches hand over at once. */
  readonly kafkajs_records_per_transaction: number;
  readonly platformatic_records_per_transaction: number;
  /** From calling `consumeKafka` until the group assigned the partitions (not part of the drain rate). */
  readonly kafkajs_join_ms: number;
  readonly platformatic_join_ms: number;
}

/**
 * `consume.kafka`: the drain rate of `consumeKafka` (inbox mode) with each client library, side by
 * side on one topic. Every round, each library starts a consumer of a group and inbox consumer name
 * of its own at the topic's first record, and applies every record (one invoice row per event, its
 * inbox mark, `batchSize` records per transaction, one partition per transaction at a time for each
 * partition); the figure is records per second from the group's assignment to the last commit, and
 * the time to join the group is reported beside it.
 */
export async function consumeKafkaDrain(brokers: string, plan: ConsumeKafkaPlan): Promise<ConsumeKafkaResult> {
  const outbox = await benchOutbox('consume_kafka');
  const pool = new pg.Pool({ connectionString: databaseUrl, max: plan.partitions + 2 });
  const invoices = `"${outbox.schema}".invoices`;
  const kafka = createKafkaClient({ brokers, logLevel: 'nothing' });
  const admin = kafka.admin();
  const topic = `bench.consume.${randomBytes(4).toString('hex')}`;
  const transport = kafkaTransport({ brokers, client: { logLevel: 'nothing' } });
  try {
    await migrateInbox(outbox.db, { schema: outbox.schema });
    await pool.query(`CREATE TABLE ${invoices} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, order_id bigint NOT NULL, total integer NOT NULL)`);
    await admin.connect();
    await createTopicWhenReady(admin, { topic, numPartitions: plan.partitions });
    progress(`consume.kafka: writing ${plan.events} records to ${topic}`);
    for (let at = 0; at < plan.events; at += 1_000) {
      const events = testEvents(Math.min(1_000, plan.events - at), { topic, key: (i) => `customer-${(at + i) % 1_000}` }).map((event, i) => ({ ...event, payload: orderPayload(at + i) as Json }));
      const outcomes = await transport.send(events, AbortSignal.timeout(60_000));
      if (outcomes.some((outcome) => outcome.status !== 'delivered')) throw new Error('bench: the topic could not be filled');
    }
    const perTransaction: Record<KafkaLibrary, number[]> = { kafkajs: [], platformatic: [] };
    const joins: Record<KafkaLibrary, number[]> = { kafkajs: [], platformatic: [] };
    const drain = (library: KafkaLibrary) => async (round: number) => {
      const name = `bench-${library}-${round}`;
      let applied = 0;
      let transactions = 0;
      const began = performance.now();
      let started = 0;
      let finished = 0;
      const consumer = await consumeKafka({
        library,
        brokers,
        client: { logLevel: 'nothing' },
        topics: [topic],
        consumer: name,
        schema: outbox.schema,
        database: pool,
        batchSize: plan.batchSize,
        partitionsConsumedConcurrently: plan.partitions,
        handler: (client: pg.PoolClient, event) => {
          const order = event.payload as { order: number; total: number };
          return client.query(`INSERT INTO ${invoices} (order_id, total) VALUES ($1, $2)`, [order.order, order.total]);
        },
        onEvent: (event) => {
          if (event.type === 'assigned' && started === 0) started = performance.now();
          if (event.type !== 'committed') return;
          applied += event.applied;
          transactions++;
          if (applied >= plan.events && finished === 0) finished = performance.now();
        },
      });
      try {
        await waitFor(`${library} applied ${plan.events} records`, () => finished > 0, 300_000);
      } finally {
        await consumer.close();
      }
      perTransaction[library].push(plan.events / transactions);
      joins[library].push(started - began);
      return plan.events / ((finished - started) / 1000);
    };
    const samples = await sideBySide('consume.kafka', plan.rounds, { kafkajs: drain('kafkajs'), platformatic: drain('platformatic') });
    return {
      kafkajs_events_per_s: median(samples.kafkajs),
      platformatic_events_per_s: median(samples.platformatic),
      platformatic_ratio: medianRatio(samples.platformatic, samples.kafkajs),
      kafkajs_records_per_transaction: median(perTransaction.kafkajs),
      platformatic_records_per_transaction: median(perTransaction.platformatic),
      kafkajs_join_ms: median(joins.kafkajs),
      platformatic_join_ms: median(joins.platformatic),
    };
  } finally {
    await transport.close();
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin.disconnect().catch(() => {});
    await pool.end();
    await outbox.close();
  }
}
