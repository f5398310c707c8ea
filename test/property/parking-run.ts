/**
 * Key parking and outages under the default relay policy, generated: random permanent failures on
 * random keys, and destination outages longer than an event's whole retry budget, against a real
 * PostgreSQL outbox and an in-process relay sending to the memory broker.
 *
 * Each case publishes its transactions one after the other (so commit order is publish order, and
 * each event carries its key's version), then judges:
 * - before any dead letter is retried: every event of a key without failures arrived (parking never
 *   delays another key), no event of a key arrived after one of its events became a dead letter
 *   (`overtook-dead-letter`), and only refused events are dead letters (`outage-dead-letter`);
 * - after retrying every dead letter: everything arrived (`lost`), each key's first arrivals in
 *   commit order (`order`), and nothing is left parked (`still-parked`).
 */
import {
  createRelay,
  failed,
  listDeadLetters,
  listParkedKeys,
  pgDatabase,
  publish,
  retry,
  retryDeadLetters,
  type OutboxEvent,
  type Relay,
  type RelayEvent,
  type SendOutcome,
  type Transport,
} from '@tidings/outbox';
import { MemoryBroker, memoryTransport } from '@tidings/relays/testing';
import fc from 'fast-check';
import { freshOutbox, inTransaction, type TestOutbox } from '../support/db.ts';
import { services } from '../support/env.ts';

/** Retries of the default policy; delays scaled down (100 ms..30 s becomes 5..50 ms). */
const retries = 10;

export interface ParkingCase {
  readonly keys: number;
  /** Per transaction, its events: which key, and whether the destination refuses it for good. */
  readonly transactions: readonly (readonly { readonly key: number; readonly poison: boolean }[])[];
  /** Before these transactions the destination goes down, until a partition waited longer than an event's retry budget. */
  readonly outagesBefore: readonly number[];
  /** Before this transaction the relay stops and a new worker takes over (parking is kept in the database). */
  readonly restartBefore: number | undefined;
}

/**
 * A case of `size.min` to `size.max` transactions. Long cases (the soak) poison fewer events and
 * have more outages, so that keys still fail now and then rather than all early.
 */
export function parkingCase(size: { readonly min: number; readonly max: number }): fc.Arbitrary<ParkingCase> {
  const long = size.max > 100;
  // Unbiased: fast-check leans integers toward their minimum, which would poison far more often.
  const poisonPerMille = long ? 5 : 80;
  return fc
    .record({
      keys: fc.integer({ min: 2, max: 6 }),
      transactions: fc.array(
        fc.array(fc.record({ key: fc.nat(5), poison: fc.noBias(fc.integer({ min: 0, max: 999 })).map((n) => n < poisonPerMille) }), { minLength: 1, maxLength: 4 }),
        { minLength: size.min, maxLength: size.max },
      ),
      outagesBefore: fc.uniqueArray(fc.nat(size.max - 1), { minLength: 1, maxLength: long ? 6 : 2 }),
      restartBefore: fc.option(fc.nat(size.max - 1), { nil: undefined }),
    })
    .map((c) => ({
      keys: c.keys,
      transactions: c.transactions.map((tx) => tx.map((e) => ({ ...e, key: e.key % c.keys }))),
      // Every case has an outage, within its transactions.
      outagesBefore: [...new Set(c.outagesBefore.map((i) => i % c.transactions.length))],
      restartBefore: c.restartBefore === undefined ? undefined : c.restartBefore % c.transactions.length,
    }));
}

interface Published {
  readonly eventId: string;
  readonly key: string;
  readonly version: number;
  readonly poison: boolean;
}

interface Payload {
  readonly version: number;
  readonly poison: boolean;
}

/** Runs one case and returns its anomalies, each starting with its name; empty when the case holds. */
export async function runParkingCase(c: ParkingCase, label: string): Promise<string[]> {
  const outbox: TestOutbox = await freshOutbox('parking_prop', { partitions: 4 });
  const database = pgDatabase(services.postgres, { max: 4 });
  const broker = new MemoryBroker();
  const topic = `parking.${label}`;
  const arrivals: { eventId: string; key: string; version: number }[] = [];
  const unwatch = broker.watch(topic, (event) => {
    arrivals.push({ eventId: event.eventId, key: event.key!, version: (event.payload as unknown as Payload).version });
  });
  let refusing = true;
  const refuses = (event: OutboxEvent) => refusing && (event.payload as unknown as Payload).poison;
  const seen: RelayEvent[] = [];
  let workers = 0;
  const start = async (): Promise<Relay> => {
    const relay = createRelay({
      name: 'parking',
      database,
      schema: outbox.schema,
      transport: refusingTransport(memoryTransport({ broker }), refuses),
      topics: [topic],
      workerId: `worker-${++workers}`,
      pollIntervalMs: 50,
      leaseTtlMs: 2_000,
      heartbeatIntervalMs: 300,
      batchSize: 20,
      retry: { minDelayMs: 5, maxDelayMs: 50 },
      onEvent: (event) => seen.push(event),
    });
    await relay.start();
    return relay;
  };
  let relay = await start();
  const anomalies: string[] = [];
  try {
    const published: Published[] = [];
    const versions = new Map<string, number>();
    for (const [i, tx] of c.transactions.entries()) {
      if (c.restartBefore === i) {
        await relay.stop({ graceMs: 1_000 });
        relay = await start();
      }
      const outage = c.outagesBefore.includes(i);
      if (outage) broker.takeDown('retry');
      const waitsBefore = seen.length;
      const items = tx.map(({ key, poison }) => {
        const name = `key-${key}`;
        const version = (versions.get(name) ?? 0) + 1;
        versions.set(name, version);
        return { key: name, version, poison };
      });
      const events = await inTransaction(outbox.pool, (client) =>
        publish(client, items.map((item) => ({ topic, key: item.key, payload: { version: item.version, poison: item.poison } })), { schema: outbox.schema }),
      );
      events.forEach((event, n) => published.push({ eventId: event.eventId, ...items[n]! }));
      if (outage) {
        // Down until some partition waited more often than an event may be tried: longer than the retry budget.
        await until(
          () => seen.slice(waitsBefore).some((e) => (e.type === 'unavailable' && e.attempt > retries + 1) || e.type === 'dead-letter'),
          // A transaction whose keys are all parked sends nothing: then the outage just lasts this long.
          5_000,
        );
        broker.recover();
      }
    }

    // Phase 1: nothing retried yet.
    const firstPoison = new Map<string, number>();
    for (const event of published) if (event.poison && !firstPoison.has(event.key)) firstPoison.set(event.key, event.version);
    const due = published.filter((e) => (firstPoison.get(e.key) ?? Infinity) > e.version);
    const arrived = () => new Set(arrivals.map((a) => a.eventId));
    await until(async () => {
      const have = arrived();
      if (!due.every((e) => have.has(e.eventId))) return false;
      return (await listDeadLetters(database, { schema: outbox.schema, relay: 'parking' })).length >= firstPoison.size;
    }, 30_000);
    await sleep(300);
    const have = arrived();
    for (const event of due.filter((e) => !have.has(e.eventId))) {
      anomalies.push(
        firstPoison.has(event.key)
          ? `missing: ${event.key} v${event.version} (before its key's first dead letter) never arrived`
          : `delayed-key: ${event.key} v${event.version} never arrived although nothing of its key failed`,
      );
    }
    for (const a of arrivals) {
      const poisonAt = firstPoison.get(a.key);
      if (poisonAt !== undefined && a.version > poisonAt) {
        anomalies.push(`overtook-dead-letter: ${a.key} v${a.version} arrived while v${poisonAt} of its key was a dead letter`);
      }
    }
    const letters = await listDeadLetters(database, { schema: outbox.schema, relay: 'parking' });
    const poisoned = new Set(published.filter((e) => e.poison).map((e) => e.eventId));
    for (const letter of letters.filter((l) => !poisoned.has(l.eventId))) {
      anomalies.push(`outage-dead-letter: ${letter.key} ${letter.eventId} became a dead letter though the destination never refused it: ${letter.errors.at(-1)?.message}`);
    }
    if (anomalies.length > 0) return anomalies;

    // Phase 2: the destination takes everything; retry until no dead letter is left.
    refusing = false;
    await until(async () => {
      await retryDeadLetters(database, { schema: outbox.schema, relay: 'parking' });
      const left = await listDeadLetters(database, { schema: outbox.schema, relay: 'parking' });
      const all = arrived();
      if (left.length > 0 || !published.every((e) => all.has(e.eventId))) return false;
      return (await listParkedKeys(database, { schema: outbox.schema, relay: 'parking' })).length === 0;
    }, 60_000);
    const all = arrived();
    for (const event of published.filter((e) => !all.has(e.eventId))) anomalies.push(`lost: ${event.key} v${event.version} never arrived`);
    const firsts = new Map<string, number[]>();
    const counted = new Set<string>();
    for (const a of arrivals) {
      if (counted.has(a.eventId)) continue;
      counted.add(a.eventId);
      firsts.set(a.key, [...(firsts.get(a.key) ?? []), a.version]);
    }
    for (const [key, order] of firsts) {
      if (order.some((v, i) => i > 0 && v < order[i - 1]!)) anomalies.push(`order: ${key} first arrived as versions ${order.join(', ')}, not in commit order`);
    }
    const parked = await listParkedKeys(database, { schema: outbox.schema, relay: 'parking' });
    if (parked.length > 0) anomalies.push(`still-parked: ${parked.map((p) => `${p.key} (${p.parkedEvents} events)`).join(', ')}`);
    return anomalies;
  } finally {
    unwatch();
    await relay.stop({ graceMs: 1_000 });
    await database.close();
    await outbox.close();
  }
}

/**
 * The memory broker's transport, refusing for good the events `refuses` picks; like the real
 * transports, it sends nothing after the first refused event of a batch.
 */
function refusingTransport(inner: Transport, refuses: (event: OutboxEvent) => boolean): Transport {
  return {
    name: inner.name,
    capabilities: inner.capabilities,
    close: () => inner.close(),
    async send(batch, signal): Promise<readonly SendOutcome[]> {
      const at = batch.findIndex(refuses);
      if (at === -1) return inner.send(batch, signal);
      const before = at === 0 ? [] : await inner.send(batch.slice(0, at), signal);
      if (before.some((outcome) => outcome.status !== 'delivered')) {
        return [...before, ...batch.slice(at).map(() => retry(new Error('not sent: an event before it was not delivered')))];
      }
      const notSent = retry(new Error('not sent: the event before it was refused'));
      return [...before, failed(new Error(`refused ${batch[at]!.eventId} on purpose`)), ...batch.slice(at + 1).map(() => notSent)];
    },
  };
}

/** Waits until `check` holds or `ms` passed (the judges then say what is missing). */
async function until(check: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check()) && Date.now() < deadline) await sleep(50);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
