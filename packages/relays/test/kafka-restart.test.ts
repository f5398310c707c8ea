import type { OutboxEvent } from '@tidings/outbox';
import { kafkaCapabilities } from '@tidings/relays/kafka';
import { runCheck, testEvents, transportChecks, kafkaHarness, type KafkaHarness } from '@tidings/relays/testing';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { judge, waitUntil } from '../../../test/support/check.ts';
import { startRestartableKafka, type RestartableKafka } from '../../../test/support/kafka-broker.ts';
import { kafkaWorld, repeated, runWorkload, startKafkaConsumerWorker, startKafkaRelayWorker, type KafkaWorld } from '../../../test/support/kafka-world.ts';
import type { RelayWorkerConfig, WorkerProcess } from '../../../test/support/worker-process.ts';

// A broker of this file's own, really stopped and started again (keeping its data).
let broker: RestartableKafka;
let world: KafkaWorld;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  broker = await startRestartableKafka();
  world = await kafkaWorld('kafka_restart', broker.brokers);
});
afterEach(async () => {
  await Promise.all(workers.splice(0).map((worker) => worker.kill()));
});
afterAll(async () => {
  await world?.close();
  await broker?.close();
});

describe('kafka transport conformance across a real broker restart', () => {
  let harness: KafkaHarness;
  beforeAll(async () => {
    harness = await kafkaHarness({ brokers: broker.brokers, broker: { stop: () => broker.stop(), start: () => broker.start() } });
  });
  afterAll(async () => {
    await harness?.close();
  });
  // The checks that take the destination down: here that is a real broker stop and start.
  for (const check of transportChecks.filter((c) => c.name.includes('while the destination is down'))) {
    it(check.name, { timeout: 120_000 }, () => runCheck(check, harness, kafkaCapabilities, {}, 'kafka restart'));
  }

  // The harness's own reader is the witness of what reached the broker: it must read on after the
  // broker was away for longer than its consumer's retries, and a record it reads again (its
  // replacement consumer starts from the topic's beginning) is not a second arrival.
  it("the harness's subscription reads on after a long broker outage, counting no record twice", { timeout: 120_000 }, async () => {
    const topic = `harness-outage-${Date.now()}`;
    const subscription = await harness.subscribe(topic);
    const transport = await harness.createTransport();
    try {
      const before = testEvents(3, { topic, key: 'k' });
      expect((await transport.send(before, AbortSignal.timeout(15_000))).every((o) => o.status === 'delivered')).toBe(true);
      await subscription.waitFor(3, 30_000);
      await harness.faults.takeDown();
      await sleep(12_000);
      await harness.faults.recover();
      const after = testEvents(5, { topic, key: 'k' });
      let unsent: readonly OutboxEvent[] = after;
      await waitUntil('the transport delivers after the restart', async () => {
        const outcomes = await transport.send(unsent, AbortSignal.timeout(15_000));
        unsent = unsent.filter((_, i) => outcomes[i]!.status !== 'delivered');
        return unsent.length === 0;
      }, 60_000);
      await waitUntil('the records sent after the restart arrived', async () => after.every((e) => subscription.received.some((m) => m.eventId === e.eventId)), 60_000);
      // The records written once before the outage count once, though a new consumer read them again.
      const ids = subscription.received.map((m) => m.eventId);
      for (const event of before) expect(ids.filter((id) => id === event.eventId), event.eventId).toHaveLength(1);
      expect(ids.slice(0, 3)).toEqual(before.map((e) => e.eventId));
    } finally {
      await subscription.close();
    }
  });
});

describe('the path from a committed transaction to an exactly-once effect over Kafka, under faults', () => {
  it(
    'applies every committed event once, in commit order per key, through relays killed mid-batch, a broker restart and consumers killed between their database and offset commits',
    { timeout: 180_000 },
    async () => {
      const topic = await world.topic('e2e', 4);
      const relayOptions = { brokers: broker.brokers, schema: world.schema, relay: 'e2e', topic };
      const consumerEnv = (mode: string) => ({ KAFKA_BROKERS: broker.brokers, TIDINGS_SCHEMA: world.schema, TIDINGS_TOPIC: topic, TIDINGS_CONSUMER: mode, TIDINGS_MODE: mode, TIDINGS_BATCH: '10' });
      const keep = (worker: WorkerProcess): WorkerProcess => {
        workers.push(worker);
        return worker;
      };
      const startConsumer = (name: string, env: Record<string, string>) => keep(startKafkaConsumerWorker(name, env));
      const startRelay = (name: string, crash?: RelayWorkerConfig['crash']) => keep(startKafkaRelayWorker(name, { ...relayOptions, crash }));
      const delivered = () => workers.filter((w) => w.name.startsWith('relay')).flatMap((w) => w.lines).reduce((n, l) => n + (l.type === 'delivered' ? Number(l.count) : 0), 0);

      // Consumers that die right after their 4th database commit, before its offset commit; then replacements.
      const consumerStory = async (mode: 'inbox' | 'checkpoint'): Promise<void> => {
        const first = startConsumer(`${mode}-1`, { ...consumerEnv(mode), TIDINGS_CRASH_AFTER_COMMITS: '4' });
        expect(await first.exited).toBe('SIGKILL');
        startConsumer(`${mode}-2`, consumerEnv(mode));
      };
      // Relays: the first dies after Kafka acknowledged a batch it never recorded, the second with a request in flight.
      const relayStory = async (): Promise<void> => {
        expect(await startRelay('relay-1', { when: 'after-ack', send: 4 }).exited).toBe('SIGKILL');
        expect(await startRelay('relay-2', { when: 'in-flight', send: 6 }).exited).toBe('SIGKILL');
        startRelay('relay-3');
      };
      // Kafka stops (clean shutdown) and starts again while the third relay is sending.
      const brokerStory = async (): Promise<void> => {
        await waitUntil('the third relay delivered', async () => workers.some((w) => w.name === 'relay-3' && w.lines.some((l) => l.type === 'delivered')), 60_000);
        await broker.restart();
      };

      const stories = Promise.all([consumerStory('inbox'), consumerStory('checkpoint'), relayStory(), brokerStory()]);
      const committed = await runWorkload(world, topic, { transactions: 100, perTransaction: 10, keys: 8, concurrency: 2, pauseMs: 40 });
      await stories;

      // inbox mode: every committed event exactly once, in commit order per key, nothing else.
      await expectAllApplied('inbox', committed);
      expect(judge(committed, await world.effects('inbox'))).toEqual({ lost: [], unexpected: [], duplicated: {}, outOfOrder: [] });

      // checkpoint mode: every record of the topic exactly once (relay duplicates included), so every
      // committed event at least once and its first application in commit order per key.
      await expectAllApplied('checkpoint', committed);
      const records = await world.readTopic(topic);
      const effects = await world.effects('checkpoint');
      expect(repeated(effects.map((r) => `${r.partition}@${r.record_offset}`)), 'records applied more than once').toEqual({});
      expect(effects.length).toBe(records.length);
      const report = judge(committed, effects);
      expect({ ...report, duplicated: {} }).toEqual({ lost: [], unexpected: [], duplicated: {}, outOfOrder: [] });
      expect(report.duplicated).toEqual(repeated(records.map((r) => r.eventId)));

      console.info(
        `e2e under faults: ${committed.length} committed events, ${records.length} records in Kafka ` +
          `(${Object.keys(report.duplicated).length} written twice by relays that died), ${delivered()} deliveries reported by relays`,
      );
    },
  );
});

async function expectAllApplied(consumer: string, committed: readonly OutboxEvent[]): Promise<void> {
  const wanted = new Set(committed.map((e) => e.eventId));
  await waitUntil(`${consumer} applied all ${wanted.size} committed events`, async () => {
    const applied = new Set((await world.effects(consumer)).map((r) => r.event_id));
    return [...wanted].every((id) => applied.has(id));
  }, 90_000);
  await sleep(500);
}
