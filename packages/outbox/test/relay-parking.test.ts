import {
  ConfigError,
  createRelay,
  discardDeadLetters,
  failed,
  listDeadLetters,
  listParkedKeys,
  partitionOf,
  publish,
  retryDeadLetters,
  status,
  type OutboxEvent,
  type Relay,
  type RelayEvent,
  type RelayOptions,
} from '@tidings/outbox';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { createSink, received, tableTransport } from '../../../test/support/table-transport.ts';

const partitions = 4;
let outbox: TestOutbox;
const relays: Relay[] = [];
let relaySeq = 0;

beforeAll(async () => {
  outbox = await freshOutbox('parking', { partitions });
  await createSink(outbox.pool, outbox.schema);
});
afterEach(async () => {
  await Promise.all(relays.splice(0).map((r) => r.stop({ graceMs: 1000 })));
});
afterAll(async () => {
  await outbox.close();
});

/** Payloads in `poisoned` are refused for good while they are in it. */
function startRelay(topic: string, poisoned: Set<string>, options: Partial<RelayOptions> = {}): { relay: Relay; events: RelayEvent[] } {
  const events: RelayEvent[] = [];
  const relay = createRelay({
    name: options.name ?? `parking-${++relaySeq}`,
    database: outbox.db,
    schema: outbox.schema,
    transport: tableTransport(outbox.pool, outbox.schema, {
      fault: (e) => (poisoned.has(e.payload as string) ? failed(new Error(`refused ${String(e.payload)}`)) : undefined),
    }),
    topics: [topic],
    pollIntervalMs: 100,
    leaseTtlMs: 2000,
    heartbeatIntervalMs: 200,
    retry: { minDelayMs: 5, maxDelayMs: 20, retries: 2 },
    onEvent: (e) => events.push(e),
    ...options,
  });
  relays.push(relay);
  return { relay, events };
}

/** A key other than `key` in the same partition, so the test shows a parked key not holding its partition back. */
function neighbourOf(key: string): string {
  const target = partitionOf(key, '', partitions);
  for (let i = 0; ; i++) if (partitionOf(`${key}-n${i}`, '', partitions) === target) return `${key}-n${i}`;
}

function publishKeyed(topic: string, items: readonly [key: string | null, payload: string][]): Promise<OutboxEvent[]> {
  return inTransaction(outbox.pool, (c) => publish(c, items.map(([key, payload]) => ({ topic, key, payload })), { schema: outbox.schema }));
}

async function payloads(topic: string, key?: string | null): Promise<string[]> {
  const rows = (await received(outbox.pool, outbox.schema)).filter((r) => r.topic === topic && (key === undefined || r.key === key));
  return rows.map((r) => r.payload as string);
}

const settle = () => new Promise((r) => setTimeout(r, 500));

describe('key parking (the default onFailure)', () => {
  it("parks a dead letter's key: its later events wait, every other key flows; retrying delivers it and then them in order", async () => {
    const topic = 'parked';
    const poisoned = new Set(['k2']);
    const { relay, events } = startRelay(topic, poisoned);
    await relay.start();
    const other = neighbourOf('k');
    await publishKeyed(topic, [['k', 'k1'], ['k', 'k2'], ['k', 'k3'], [other, 'o1'], ['k', 'k4'], [other, 'o2']]);
    await waitUntil('the other key was delivered', async () => (await payloads(topic, other)).length === 2);
    await settle();
    expect(await payloads(topic, 'k')).toEqual(['k1']);
    expect(await payloads(topic, other)).toEqual(['o1', 'o2']);

    const [letter] = await listDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name });
    expect(letter).toMatchObject({ payload: 'k2', key: 'k', parksKey: true, parkedEvents: 2 });
    expect(await listParkedKeys(outbox.db, { schema: outbox.schema, relay: relay.name })).toEqual([
      expect.objectContaining({ key: 'k', deadLetterEventId: letter!.eventId, parkedEvents: 2, partition: partitionOf('k', '', partitions) }),
    ]);
    const report = (await status(outbox.db, { schema: outbox.schema })).relays.find((r) => r.relay === relay.name)!;
    expect(report).toMatchObject({ deadLetters: 1, parkedKeys: 1, parkedEvents: 2 });
    expect(relay.status().parkedKeys).toBe(1);
    expect(events).toContainEqual(expect.objectContaining({ type: 'key-parked', key: 'k', eventId: letter!.eventId }));

    // Events published while the key is parked join the queue behind it; the neighbour still flows.
    await publishKeyed(topic, [['k', 'k5'], [other, 'o3']]);
    await waitUntil('the neighbour flows on', async () => (await payloads(topic, other)).length === 3);
    await waitUntil('k5 parked too', async () => (await listParkedKeys(outbox.db, { schema: outbox.schema, relay: relay.name }))[0]?.parkedEvents === 3);
    expect(await payloads(topic, 'k')).toEqual(['k1']);

    poisoned.clear();
    expect(await retryDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name })).toBe(1);
    await waitUntil('the key was released', async () => (await payloads(topic, 'k')).length === 5);
    expect(await payloads(topic, 'k')).toEqual(['k1', 'k2', 'k3', 'k4', 'k5']);
    await waitUntil('nothing parked any more', async () => (await listParkedKeys(outbox.db, { schema: outbox.schema, relay: relay.name })).length === 0);
    expect(await listDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name })).toEqual([]);
    expect(events).toContainEqual(expect.objectContaining({ type: 'key-released', key: 'k', delivered: 4 }));

    await publishKeyed(topic, [['k', 'k6']]);
    await waitUntil('the key flows again', async () => (await payloads(topic, 'k')).length === 6);
    expect(await payloads(topic, 'k')).toEqual(['k1', 'k2', 'k3', 'k4', 'k5', 'k6']);
  });

  it('discarding the dead letter releases the parked events, in order', async () => {
    const topic = 'discarded';
    const { relay } = startRelay(topic, new Set(['d2']));
    await relay.start();
    await publishKeyed(topic, [['d', 'd1'], ['d', 'd2'], ['d', 'd3'], ['d', 'd4']]);
    await waitUntil('the key is parked', async () => (await listParkedKeys(outbox.db, { schema: outbox.schema, relay: relay.name }))[0]?.parkedEvents === 2);
    expect(await payloads(topic)).toEqual(['d1']);
    expect(await discardDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name })).toBe(1);
    await waitUntil('the parked events were delivered', async () => (await payloads(topic)).length === 3);
    expect(await payloads(topic)).toEqual(['d1', 'd3', 'd4']);
    await waitUntil('nothing parked any more', async () => (await listParkedKeys(outbox.db, { schema: outbox.schema, relay: relay.name })).length === 0);
  });

  it('releases a long queue of parked events in commit order (more than a page, seq 10 after seq 9)', async () => {
    const topic = 'long-queue';
    const { relay } = startRelay(topic, new Set(['q0']), { batchSize: 4 });
    await relay.start();
    const names = Array.from({ length: 25 }, (_, i) => `q${i}`);
    await publishKeyed(topic, [['q', 'q0']]);
    await waitUntil('the key is parked', async () => (await listParkedKeys(outbox.db, { schema: outbox.schema, relay: relay.name })).length === 1);
    for (let i = 1; i < names.length; i += 3) await publishKeyed(topic, names.slice(i, i + 3).map((name) => ['q', name] as [string, string]));
    await waitUntil('all parked', async () => (await listParkedKeys(outbox.db, { schema: outbox.schema, relay: relay.name }))[0]?.parkedEvents === 24);
    expect(await discardDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name })).toBe(1);
    await waitUntil('the parked events were delivered', async () => (await payloads(topic)).length === 24);
    expect(await payloads(topic)).toEqual(names.slice(1));
  });

  it('keeps a key parked across a restart and a move to another worker', async () => {
    const topic = 'restarted';
    const poisoned = new Set(['r2']);
    const first = startRelay(topic, poisoned, { name: 'parking-restart' });
    await first.relay.start();
    await publishKeyed(topic, [['r', 'r1'], ['r', 'r2'], ['r', 'r3']]);
    await waitUntil('the key is parked', async () => (await listParkedKeys(outbox.db, { schema: outbox.schema, relay: 'parking-restart' }))[0]?.parkedEvents === 1);
    await first.relay.stop();

    const second = startRelay(topic, poisoned, { name: 'parking-restart', workerId: 'second-worker' });
    await second.relay.start();
    await publishKeyed(topic, [['r', 'r4'], ['s', 's1']]);
    await waitUntil('the other key flows', async () => (await payloads(topic, 's')).length === 1);
    await waitUntil('r4 parked behind r2', async () => (await listParkedKeys(outbox.db, { schema: outbox.schema, relay: 'parking-restart' }))[0]?.parkedEvents === 2);
    expect(await payloads(topic, 'r')).toEqual(['r1']);
    poisoned.clear();
    await retryDeadLetters(outbox.db, { schema: outbox.schema, relay: 'parking-restart' });
    await waitUntil('the key was released', async () => (await payloads(topic, 'r')).length === 4);
    expect(await payloads(topic, 'r')).toEqual(['r1', 'r2', 'r3', 'r4']);
  });

  it('a parked event refused for good becomes the dead letter its key waits behind, with the rest still parked', async () => {
    const topic = 'refused-again';
    const poisoned = new Set(['p2', 'p3']);
    const { relay } = startRelay(topic, poisoned);
    await relay.start();
    await publishKeyed(topic, [['p', 'p1'], ['p', 'p2'], ['p', 'p3'], ['p', 'p4']]);
    await waitUntil('the key is parked', async () => (await listParkedKeys(outbox.db, { schema: outbox.schema, relay: relay.name }))[0]?.parkedEvents === 2);
    poisoned.delete('p2');
    await retryDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name });
    await waitUntil('p2 delivered', async () => (await payloads(topic)).length === 2);
    await waitUntil('p3 is the dead letter now', async () => {
      const letters = await listDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name });
      return letters.length === 1 && letters[0]!.payload === 'p3' && letters[0]!.status === 'dead' && letters[0]!.parkedEvents === 1;
    });
    await settle();
    expect(await payloads(topic)).toEqual(['p1', 'p2']);
    poisoned.clear();
    await retryDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name });
    await waitUntil('the rest delivered', async () => (await payloads(topic)).length === 4);
    expect(await payloads(topic)).toEqual(['p1', 'p2', 'p3', 'p4']);
  });

  it("a keyless event's dead letter parks nothing", async () => {
    const topic = 'keyless';
    const { relay } = startRelay(topic, new Set(['n2']));
    await relay.start();
    await publishKeyed(topic, [[null, 'n1'], [null, 'n2'], [null, 'n3']]);
    await waitUntil('the others arrived', async () => (await payloads(topic)).length === 2);
    expect((await payloads(topic)).sort()).toEqual(['n1', 'n3']);
    // Keyless events spread over partitions: n2's may come last.
    const [letter] = await waitUntil('the dead letter', async () => {
      const letters = await listDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name });
      return letters.length > 0 && letters;
    });
    expect(letter).toMatchObject({ payload: 'n2', parksKey: false, parkedEvents: 0 });
    expect(await listParkedKeys(outbox.db, { schema: outbox.schema, relay: relay.name })).toEqual([]);
  });

  it('refuses the former "dead-letter" mode, naming the modes that replace it', () => {
    const make = (onFailure: string) =>
      createRelay({ name: 'x', database: outbox.db, transport: tableTransport(outbox.pool, outbox.schema), onFailure: onFailure as RelayOptions['onFailure'] });
    expect(() => make('dead-letter')).toThrow(ConfigError);
    expect(() => make('dead-letter')).toThrow(/"park".*"skip-unordered"/);
    expect(() => make('skip')).toThrow(/expected "park", "block" or "skip-unordered"/);
  });
});
