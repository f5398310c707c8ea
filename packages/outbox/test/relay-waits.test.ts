import {
  createRelay,
  partitionOf,
  publish,
  retry,
  unavailable,
  type OutboxEvent,
  type Relay,
  type RelayEvent,
  type SendOutcome,
  type Transport,
} from '@tidings/outbox';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';

// Waits for a destination that keeps failing must never hold up leases: a release or a stop ends
// a partition's wait at once, and the heartbeat never waits for a partition.
const partitions = 16;
let outbox: TestOutbox;
const relays: Relay[] = [];

beforeAll(async () => {
  outbox = await freshOutbox('relay_waits', { partitions });
});
afterEach(async () => {
  await Promise.all(relays.splice(0).map((r) => r.stop({ graceMs: 500 })));
});
afterAll(() => outbox.close());

/** A destination that answers `answer` to every event, counting the sends it gets. */
function failingTransport(answer: () => SendOutcome): Transport & { sends: number[] } {
  const sends: number[] = [];
  return {
    name: 'always-failing',
    capabilities: { orderedPerKey: true, persistent: true },
    sends,
    async send(batch) {
      sends.push(Date.now());
      return batch.map(() => answer());
    },
    async close() {},
  };
}

/** One event in every partition, so each partition's runner is waiting. */
async function eventInEveryPartition(topic: string): Promise<OutboxEvent[]> {
  const keys: string[] = [];
  for (let p = 0, i = 0; p < partitions; i++) {
    if (partitionOf(`key-${i}`, '', partitions) === p) {
      keys.push(`key-${i}`);
      p++;
    }
  }
  return inTransaction(outbox.pool, (c) => publish(c, keys.map((key) => ({ topic, key, payload: key })), { schema: outbox.schema }));
}

describe('waiting for a failing destination', () => {
  it('splits the leases between two workers without losing any while every partition waits for the destination', async () => {
    const topic = 'rebalance';
    await eventInEveryPartition(topic);
    const seen: Record<string, RelayEvent[]> = { first: [], second: [] };
    const make = (worker: 'first' | 'second') => {
      const relay = createRelay({
        name: 'rebalancing',
        database: outbox.db,
        schema: outbox.schema,
        transport: failingTransport(() => unavailable(new Error('connection refused'))),
        topics: [topic],
        workerId: worker,
        leaseTtlMs: 1_500,
        heartbeatIntervalMs: 300,
        // Each wait is far longer than a lease: before the fix, giving back 8 partitions waited
        // out 8 grace periods inside the heartbeat and let the others' leases run out.
        retry: { minDelayMs: 10_000, maxDelayMs: 10_000 },
        onEvent: (event) => seen[worker]!.push(event),
      });
      relays.push(relay);
      return relay;
    };
    const first = make('first');
    await first.start();
    await waitUntil('every partition of the first worker waits for the destination', async () => first.status().destination.waitingPartitions.length === partitions);

    const second = make('second');
    await second.start();
    await waitUntil('the leases are split', async () => first.status().partitions.length === 8 && second.status().partitions.length === 8, 15_000);
    // Several lease lifetimes later, nothing was lost and the split holds.
    await new Promise((r) => setTimeout(r, 4_500));
    expect(first.status().partitions.length).toBe(8);
    expect(second.status().partitions.length).toBe(8);
    expect(new Set([...first.status().partitions, ...second.status().partitions]).size).toBe(partitions);
    const lost = Object.entries(seen).flatMap(([worker, events]) => events.filter((e) => e.type === 'lease-lost').map((e) => `${worker}: ${JSON.stringify(e)}`));
    expect(lost).toEqual([]);
    expect(seen.first!.filter((e) => e.type === 'lease-released')).toHaveLength(8);
  });

  it('a stop ends a retry wait at once and starts no new attempt once stopping', async () => {
    const topic = 'stopping';
    await eventInEveryPartition(topic);
    const transport = failingTransport(() => retry(new Error('try again later')));
    const relay = createRelay({
      name: 'stopping',
      database: outbox.db,
      schema: outbox.schema,
      transport,
      topics: [topic],
      onFailure: 'block',
      retry: { minDelayMs: 60_000, maxDelayMs: 60_000 },
    });
    relays.push(relay);
    await relay.start();
    await waitUntil('every partition tried once and waits a minute', async () => transport.sends.length >= partitions);
    // Counted, not timed: a send that began in the millisecond the stop began is not one after it.
    const triedBeforeStop = transport.sends.length;
    const stopping = Date.now();
    await relay.stop({ graceMs: 30_000 });
    // Before the fix, stop() waited out the grace period (30 s) before the waits ended.
    expect(Date.now() - stopping).toBeLessThan(10_000);
    expect(triedBeforeStop).toBe(partitions);
    expect(transport.sends).toHaveLength(triedBeforeStop);
  });
});
