import { randomBytes } from 'node:crypto';
import { createRelay, listDeadLetters, publish, status, type OutboxEvent, type Relay, type RelayEvent } from '@tidings/outbox';
import { kafkaHarness, rabbitmqHarness, type ReceivedMessage, type TransportHarness, webhookHarness } from '@tidings/relays/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';

// Under the default policy (10 retries, onFailure "park") with its delays scaled down about 600
// times (100 ms..30 s becomes 5..50 ms), so the whole retry budget of an event is at most
// 10 + 20 + 40 + 7 x 50 = 420 ms. Each outage below lasts until one partition has waited for the
// destination more than three times as many times as an event may be tried: with the default
// delays that is an outage of well over 4 minutes (the budget is about 80 s).
const retries = 10;
const scaledDelays = { minDelayMs: 5, maxDelayMs: 50 };
const outageWaits = 3 * (retries + 1) + 1;

let outbox: TestOutbox;
beforeAll(async () => {
  outbox = await freshOutbox('relay_outage', { partitions: 4 });
});
afterAll(() => outbox?.close());

const destinations: Array<[string, () => Promise<TransportHarness>]> = [
  ['RabbitMQ (unreachable through the fault proxy)', () => rabbitmqHarness({ url: services.rabbitmq })],
  ['Kafka (unreachable through the fault proxy)', () => kafkaHarness({ brokers: services.kafka, transport: { sendTimeoutMs: 1_000 } })],
  ['a webhook receiver (refusing connections)', () => webhookHarness({ downMode: 'refuse' })],
];

describe('a destination outage under the default policy', () => {
  for (const [name, harnessOf] of destinations) {
    it(`${name}: makes no dead letter, and every event arrives in commit order per key afterwards`, async () => {
      const harness = await harnessOf();
      const topic = `outage-${randomBytes(4).toString('hex')}`;
      const events: RelayEvent[] = [];
      let relay: Relay | undefined;
      try {
        const subscription = await harness.subscribe(topic);
        relay = createRelay({
          name: `outage-${topic}`,
          database: outbox.db,
          schema: outbox.schema,
          transport: await harness.createTransport(),
          topics: [topic],
          pollIntervalMs: 100,
          leaseTtlMs: 3_000,
          retry: scaledDelays,
          onEvent: (event) => events.push(event),
        });
        await relay.start();
        const publishRound = (round: number) =>
          inTransaction(outbox.pool, (client) =>
            publish(client, Array.from({ length: 4 }, (_, i) => ({ topic, key: `key-${i}`, payload: { round } })), { schema: outbox.schema }),
          );
        const committed: OutboxEvent[] = [...(await publishRound(0)), ...(await publishRound(1))];
        // Redeliveries count in `received`: wait for distinct events.
        const allArrived = (timeoutMs: number) =>
          waitUntil('every committed event arrived', async () => new Set(subscription.received.map((m) => m.eventId)).size >= committed.length, timeoutMs);
        await allArrived(30_000);

        await harness.faults.takeDown();
        for (let round = 2; round < 5; round++) committed.push(...(await publishRound(round)));
        await waitUntil(
          'the relay waited for the destination many times the retry budget',
          // ... or until it counted the outage against an event, which the next line reports.
          async () => events.some((e) => (e.type === 'unavailable' && e.attempt >= outageWaits) || e.type === 'dead-letter'),
          60_000,
        );
        expect(events.filter((e) => e.type === 'dead-letter' || e.type === 'retry').map((e) => `${e.type}: ${'error' in e ? e.error.message : ''}`)).toEqual([]);
        const seen = relay.status();
        expect(seen.destination.available).toBe(false);
        expect(seen.destination.waitingPartitions.length).toBeGreaterThan(0);
        expect(seen.destination.error).toBeTruthy();
        const report = async () => (await status(outbox.db, { schema: outbox.schema })).relays.find((r) => r.relay === relay!.name)!;
        await waitUntil('status() shows the outage', async () => (await report()).unavailableSince !== null);

        await harness.faults.recover();
        await allArrived(60_000);
        expect(await listDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name })).toEqual([]);
        expect(events.filter((e) => e.type === 'dead-letter')).toEqual([]);
        expect(firstArrivalOrder(subscription.received)).toEqual(orderPerKey(committed));
        await waitUntil('the relay sees the destination again', async () => relay!.status().destination.available);
        await waitUntil('status() shows no outage', async () => (await report()).unavailableSince === null);
        expect(events.some((e) => e.type === 'available' && e.unavailableMs > 0)).toBe(true);
      } finally {
        await harness.faults.recover();
        await relay?.stop({ graceMs: 1_000 });
        await harness.close();
      }
    });
  }
});

/** Event ids per key in commit order (one transaction per round, committed one after the other). */
function orderPerKey(events: readonly OutboxEvent[]): Record<string, string[]> {
  const byKey: Record<string, string[]> = {};
  for (const event of events) (byKey[event.key!] ??= []).push(event.eventId);
  return byKey;
}

/** Event ids per key in the order of their first arrival (a redelivery may repeat one). */
function firstArrivalOrder(received: readonly ReceivedMessage[]): Record<string, string[]> {
  const seen = new Set<string>();
  const byKey: Record<string, string[]> = {};
  for (const message of received) {
    if (seen.has(message.eventId)) continue;
    seen.add(message.eventId);
    (byKey[message.key!] ??= []).push(message.eventId);
  }
  return byKey;
}
