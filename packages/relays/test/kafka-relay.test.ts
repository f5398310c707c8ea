import { createRelay, type OutboxEvent, type Relay } from '@tidings/outbox';
import { kafkaTransport, type KafkaTransport } from '@tidings/relays/kafka';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { judge, waitUntil } from '../../../test/support/check.ts';
import { services } from '../../../test/support/env.ts';
import { kafkaWorld, repeated, runWorkload, startEffectConsumer, startKafkaRelayWorker, type KafkaWorld, type TestConsumer, type TopicRecord } from '../../../test/support/kafka-world.ts';
import type { WorkerProcess } from '../../../test/support/worker-process.ts';

let world: KafkaWorld;
const relays: Relay[] = [];
const consumers: TestConsumer[] = [];
const workers: WorkerProcess[] = [];
let relaySeq = 0;

beforeAll(async () => {
  world = await kafkaWorld('kafka_relay', services.kafka);
});
afterEach(async () => {
  await Promise.all(workers.splice(0).map((worker) => worker.kill()));
  await Promise.all(relays.splice(0).map((relay) => relay.stop({ graceMs: 1_000 })));
  await Promise.all(consumers.splice(0).map(({ consumer }) => consumer.close()));
});
afterAll(async () => {
  await world?.close();
});

function startRelay(topic: string, transport: KafkaTransport): Relay {
  const relay = createRelay({
    name: `kafka-${++relaySeq}`,
    database: world.outbox.db,
    schema: world.schema,
    transport,
    topics: [topic],
    pollIntervalMs: 100,
    leaseTtlMs: 2_000,
    heartbeatIntervalMs: 300,
    retry: { minDelayMs: 20, maxDelayMs: 500, retries: 1_000 },
  });
  relays.push(relay);
  return relay;
}

/** Per key: the partitions its records are in, and its event ids in offset order, first copies only. */
function byKey(records: readonly TopicRecord[]): Map<string, { partitions: Set<number>; ids: string[] }> {
  const keys = new Map<string, { partitions: Set<number>; ids: string[] }>();
  const seen = new Set<string>();
  for (const record of records) {
    const entry = keys.get(record.key!) ?? keys.set(record.key!, { partitions: new Set(), ids: [] }).get(record.key!)!;
    entry.partitions.add(record.partition);
    if (!seen.has(record.eventId)) entry.ids.push(record.eventId);
    seen.add(record.eventId);
  }
  return keys;
}

function commitOrder(committed: readonly OutboxEvent[]): Map<string, string[]> {
  const order = new Map<string, string[]>();
  for (const event of committed) (order.get(event.key!) ?? order.set(event.key!, []).get(event.key!)!).push(event.eventId);
  return order;
}

async function expectAppliedOnce(consumer: string, committed: readonly OutboxEvent[], timeoutMs = 60_000): Promise<void> {
  const wanted = new Set(committed.map((e) => e.eventId));
  await waitUntil(`all ${wanted.size} committed events were applied by ${consumer}`, async () => {
    const applied = new Set((await world.effects(consumer)).map((r) => r.event_id));
    return [...wanted].every((id) => applied.has(id));
  }, timeoutMs);
  await sleep(300);
  expect(judge(committed, await world.effects(consumer))).toEqual({ lost: [], unexpected: [], duplicated: {}, outOfOrder: [] });
}

describe('the Kafka relay', () => {
  it('puts the events of a key in one Kafka partition, in commit order, and never an event of a rolled-back transaction', async () => {
    const topic = await world.topic('placement', 6);
    const transport = kafkaTransport({ brokers: services.kafka, client: { logLevel: 'nothing' } });
    await startRelay(topic, transport).start();

    // Four writers commit concurrently, so commit order interleaves transactions of every key.
    const committed = await runWorkload(world, topic, { transactions: 60, perTransaction: 10, keys: 20, concurrency: 4 });
    await waitUntil('every committed event is in the topic', async () => {
      const ids = new Set((await world.readTopic(topic)).map((r) => r.eventId));
      return committed.every((e) => ids.has(e.eventId));
    });

    const records = await world.readTopic(topic);
    expect(records.map((r) => r.eventId).filter((id) => !committed.some((e) => e.eventId === id))).toEqual([]);
    const placed = byKey(records);
    const partitionsPerKey = [...placed].filter(([, { partitions }]) => partitions.size !== 1).map(([key, { partitions }]) => `${key}: ${[...partitions]}`);
    expect(partitionsPerKey, 'keys whose records are in more than one partition').toEqual([]);
    expect(new Set([...placed.values()].map(({ partitions }) => [...partitions][0])).size, 'partitions used by 20 keys').toBeGreaterThan(1);
    for (const [key, ids] of commitOrder(committed)) expect(placed.get(key)?.ids, `records of ${key} in offset order`).toEqual(ids);
    expect(transport.stats().failedRequests).toBe(0);
  });

  it('applies each effect once, in commit order per key, when relay processes are killed mid-batch and others take over', async () => {
    const topic = await world.topic('killed', 4);
    consumers.push(await startEffectConsumer(world, { name: 'killed', topics: [topic] }));
    const committed = await runWorkload(world, topic, { transactions: 40, perTransaction: 25, keys: 9, concurrency: 2 });
    const relay = `kafka-proc-${++relaySeq}`;
    const options = { brokers: services.kafka, schema: world.schema, relay, topic };

    // The first dies right after Kafka acknowledged a batch it never recorded; the second with a
    // request on the wire; the third finishes.
    const first = startKafkaRelayWorker('first', { ...options, crash: { when: 'after-ack', send: 3 } });
    workers.push(first);
    expect(await first.exited).toBe('SIGKILL');
    const second = startKafkaRelayWorker('second', { ...options, crash: { when: 'in-flight', send: 4 } });
    workers.push(second);
    expect(await second.exited).toBe('SIGKILL');
    workers.push(startKafkaRelayWorker('third', options));

    await expectAppliedOnce('killed', committed, 90_000);
    const records = await world.readTopic(topic);
    const duplicates = repeated(records.map((r) => r.eventId));
    // The batch acknowledged before the first crash is in the topic twice; the inbox skipped the copies.
    expect(Object.keys(duplicates).length).toBeGreaterThan(0);
    console.info(`relay kill: ${records.length} records for ${committed.length} committed events (${Object.keys(duplicates).length} duplicated)`);
  });
});
