import {
  listDeadLetters,
  logStart,
  publish,
  readPartition,
  retryDeadLetters,
  type Executor,
  type OutboxEvent,
  type Position,
  type ReadOptions,
  type Relay,
  type RelayEvent,
  type Transport,
} from '@tidings/outbox';
import { createSharedRelay, SharedHeartbeats, SharedPartitionReads } from '@tidings/outbox/internal';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';

let outbox: TestOutbox;
/** Every event of the log, per partition, in log order. */
const log = new Map<number, OutboxEvent[]>();
const topics = ['orders.created', 'orders.paid', 'users.created'];
const tenants = [null, 'acme', 'globex'];

beforeAll(async () => {
  outbox = await freshOutbox('shared_reads', { partitions: 2 });
  for (let t = 0; t < 40; t++) {
    await inTransaction(outbox.pool, (client) =>
      publish(
        client,
        Array.from({ length: 1 + (t % 4) }, (_, i) => ({ topic: topics[(t + i) % 3]!, key: `k${(t * 7 + i) % 9}`, payload: { t, i }, tenant: tenants[(t + 2 * i) % 3] })),
        { schema: outbox.schema },
      ),
    );
  }
  for (const partition of [0, 1]) log.set(partition, (await readPartition(outbox.db, outbox.schema, { partition, after: logStart, limit: 10_000 })).events);
});
afterAll(() => outbox.close());

/** `outbox.db` with its statements counted. */
function counted(): { executor: Executor; statements: () => number } {
  let statements = 0;
  return {
    executor: { query: ((text: string, params?: readonly unknown[]) => (statements++, outbox.db.query(text, params))) as Executor['query'] },
    statements: () => statements,
  };
}

/** Pages from `after` until one says there is no more: the events and where the reader got to. */
async function readToEnd(read: (options: ReadOptions) => Promise<{ events: OutboxEvent[]; scannedTo: Position; more: boolean }>, options: ReadOptions) {
  const events: string[] = [];
  let after = options.after;
  for (let pages = 0; pages < 1_000; pages++) {
    const page = await read({ ...options, after });
    expect(page.events.length).toBeLessThanOrEqual(options.limit);
    events.push(...page.events.map((e) => e.eventId));
    after = page.scannedTo;
    if (!page.more) return { events, scannedTo: after };
  }
  throw new Error('the reader never reached the end of the log');
}

describe('shared partition reads', () => {
  it('answer every runner exactly what readPartition answers, whatever its cursor, filter, page size and the wake-ups between', async () => {
    const positions = [0, 1].flatMap((p) => [logStart, ...log.get(p)!.map((e) => e.position)]);
    const request = fc.record({
      partition: fc.constantFrom(0, 1),
      from: fc.nat(positions.length - 1),
      limit: fc.integer({ min: 1, max: 9 }),
      topics: fc.option(fc.subarray(['orders.*', 'orders.paid', 'users.created', 'nothing.*'], { minLength: 1 }), { nil: undefined }),
      tenant: fc.option(fc.constantFrom('acme', 'globex'), { nil: undefined }),
      wake: fc.boolean(),
    });
    // Small, so that runners fall behind what the tail keeps, and the tail has to catch up.
    const shared = new SharedPartitionReads(outbox.db, outbox.schema, { readLimit: 4, capacity: 6 });
    await fc.assert(
      fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 12 }), async (requests) => {
        const answers = requests.map(async ({ partition, from, limit, topics, tenant, wake }) => {
          const options: ReadOptions = { partition, after: positions[from]!, limit, topics, tenant };
          if (wake) shared.wake(partition);
          const got = await readToEnd((o) => shared.read(o), options);
          const expected = await readToEnd((o) => readPartition(outbox.db, outbox.schema, o), options);
          expect(got).toEqual(expected);
        });
        await Promise.all(answers);
      }),
      { numRuns: 60 },
    );
    shared.close();
  });

  it('serve many caught-up runners with one statement after a wake-up, and with none when nothing was announced', async () => {
    const { executor, statements } = counted();
    const shared = new SharedPartitionReads(executor, outbox.schema);
    const end = (await readToEnd((o) => shared.read(o), { partition: 0, after: logStart, limit: 50 })).scannedTo;
    const before = statements();
    shared.wake(0);
    const pages = await Promise.all(Array.from({ length: 50 }, (_, i) => shared.read({ partition: 0, after: end, limit: 10, topics: i % 2 ? ['orders.*'] : undefined })));
    expect(pages.every((page) => page.events.length === 0 && !page.more)).toBe(true);
    expect(statements() - before).toBe(1);
    await Promise.all(Array.from({ length: 50 }, () => shared.read({ partition: 0, after: end, limit: 10 })));
    expect(statements() - before).toBe(1);
    shared.close();
  });

  it('polls the log for its runners and wakes them when it found events that no NOTIFY announced', async () => {
    const shared = new SharedPartitionReads(outbox.db, outbox.schema);
    let partition = 0;
    const end = new Map<number, Position>();
    for (const p of [0, 1]) end.set(p, (await readToEnd((o) => shared.read(o), { partition: p, after: logStart, limit: 100 })).scannedTo);
    let woken = 0;
    const unfollow = [0, 1].map((p) => shared.follow(p, () => void (p === partition && woken++), 20));
    const [event] = await inTransaction(outbox.pool, (client) => publish(client, { topic: 'orders.created', key: 'late', payload: {} }, { schema: outbox.schema, notify: false }));
    partition = event!.partition;
    await waitUntil('the poll found the event and woke the runner', async () => woken > 0, 10_000);
    const page = await shared.read({ partition, after: end.get(partition)!, limit: 10 });
    expect(page.events.map((e) => e.eventId)).toEqual([event!.eventId]);
    for (const stop of unfollow) stop();
    shared.close();
  });
});

describe('relays sharing their reads and heartbeats', () => {
  it('share partitions among their workers, keep their leases, deliver to each relay and send a retried dead letter', async () => {
    const shares = { reads: new SharedPartitionReads(outbox.db, outbox.schema), heartbeats: new SharedHeartbeats(outbox.db, outbox.schema) };
    const got = new Map<string, string[]>();
    const refused = new Set<string>();
    const transport = (relay: string): Transport => ({
      name: 'collect',
      capabilities: { orderedPerKey: true, persistent: false },
      async send(batch) {
        return batch.map((event) => {
          if ((event.payload as { refuse?: boolean }).refuse && !refused.has(`${relay}:${event.eventId}`)) {
            refused.add(`${relay}:${event.eventId}`);
            return { status: 'failed', error: new Error('refused once') } as const;
          }
          got.set(relay, [...(got.get(relay) ?? []), event.eventId]);
          return { status: 'delivered' } as const;
        });
      },
      async close() {},
    });
    const events: RelayEvent[] = [];
    const relay = (name: string, workerId: string): Relay =>
      createSharedRelay(
        {
          name,
          workerId,
          database: outbox.db,
          schema: outbox.schema,
          transport: transport(name),
          topics: ['shared.*'],
          startFrom: 'now',
          pollIntervalMs: 100,
          leaseTtlMs: 2_000,
          heartbeatIntervalMs: 200,
          onEvent: (event) => events.push(event),
        },
        shares,
      );
    // Two workers of one relay, and a relay of its own: their heartbeats go out together.
    const relays = [relay('shared-a', 'w1'), relay('shared-a', 'w2'), relay('shared-b', 'w1')];
    try {
      for (const r of relays) await r.start();
      await waitUntil('the workers of shared-a split the partitions', async () => relays.every((r) => r.status().partitions.length === (r.name === 'shared-a' ? 1 : 2)), 10_000);
      const published = await inTransaction(outbox.pool, (client) =>
        publish(client, [...Array.from({ length: 10 }, (_, i) => ({ topic: 'shared.x', payload: { i } })), { topic: 'shared.x', payload: { refuse: true } }], { schema: outbox.schema }),
      );
      const ids = published.map((e) => e.eventId);
      const refusedId = ids.at(-1)!;
      for (const name of ['shared-a', 'shared-b']) {
        await waitUntil(`${name} got every event but the refused one`, async () => ids.slice(0, -1).every((id) => got.get(name)?.includes(id)), 10_000);
        await waitUntil(`${name} dead-lettered the refused one`, async () => (await listDeadLetters(outbox.db, { schema: outbox.schema, relay: name })).length === 1, 10_000);
      }
      expect(await retryDeadLetters(outbox.db, { schema: outbox.schema, relay: 'shared-a' })).toBe(1);
      await waitUntil('the retried dead letter was sent', async () => got.get('shared-a')?.includes(refusedId) === true, 10_000);
      // Several lease times later, every worker still holds what it held: the renewals went out together.
      await new Promise((resolve) => setTimeout(resolve, 2 * 2_000));
      expect(relays.map((r) => r.status().partitions.length)).toEqual([1, 1, 2]);
      expect(events.filter((e) => e.type === 'lease-lost')).toEqual([]);
      expect(got.get('shared-b')?.includes(refusedId), 'a dead letter of shared-b that nobody retried').toBe(false);
    } finally {
      for (const r of relays) await r.stop({ graceMs: 1_000 });
      shares.reads.close();
    }
  });
});

