import { comparePositions, publish, type EventInput, type OutboxEvent } from '@tidings/outbox';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { judge, waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inCommitOrder, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { createSink, received } from '../../../test/support/table-transport.ts';
import { services } from '../../../test/support/env.ts';
import { startRelayWorker, testRelayTimings, type WorkerProcess } from '../../../test/support/worker-process.ts';

const partitions = 12;
let outbox: TestOutbox;
let workers: WorkerProcess[] = [];

beforeAll(async () => {
  outbox = await freshOutbox('workers', { partitions });
  await createSink(outbox.pool, outbox.schema);
});
afterEach(async () => {
  for (const worker of workers) {
    worker.signal('SIGCONT');
    worker.signal('SIGKILL');
    await worker.exited;
  }
  workers = [];
  await outbox.pool.query(`TRUNCATE "${outbox.schema}".received`);
});
afterAll(async () => {
  await outbox.close();
});

function spawn(relay: string, id: string, leaseMs = 2000): WorkerProcess {
  const worker = startRelayWorker({
    databaseUrl: services.postgres,
    relay: { ...testRelayTimings, name: relay, schema: outbox.schema, workerId: id, leaseTtlMs: leaseMs, heartbeatIntervalMs: Math.floor(leaseMs / 6) },
    transport: { kind: 'table', url: services.postgres, schema: outbox.schema },
  });
  workers.push(worker);
  return worker;
}

/** Publishes `transactions` transactions of a few keyed events each; returns them in log order. */
async function publishMany(transactions: number, tag: string): Promise<OutboxEvent[]> {
  const all: OutboxEvent[] = [];
  for (let t = 0; t < transactions; t++) {
    const events: EventInput[] = Array.from({ length: 4 }, (_, i) => ({ topic: 'w', key: `${tag}-${(t * 3 + i) % 20}`, payload: { t, i } }));
    all.push(...(await inTransaction(outbox.pool, (c) => publish(c, events, { schema: outbox.schema }))));
  }
  return inCommitOrder(outbox.db, outbox.schema, all);
}

async function deliveredAll(events: readonly OutboxEvent[]): Promise<void> {
  const wanted = new Set(events.map((e) => e.eventId));
  await waitUntil(
    `all ${wanted.size} events arrived`,
    async () => {
      const got = new Set((await received(outbox.pool, outbox.schema)).map((r) => r.event_id));
      return [...wanted].every((id) => got.has(id));
    },
    40_000,
  );
}

describe('relay workers in separate processes', () => {
  it.each([2, 3])('%i workers share the partitions and deliver everything in per-key order', async (count) => {
    const relay = `shared-${count}`;
    const group = Array.from({ length: count }, (_, i) => spawn(relay, `${relay}-w${i}`));
    await Promise.all(group.map((w) => w.waitFor((l) => l.type === 'started')));
    await waitUntil('partitions spread over every worker', async () => {
      const owned = group.map((w) => w.owned().size);
      return owned.every((n) => n > 0) && owned.reduce((a, b) => a + b) === partitions;
    });
    const events = await publishMany(60, relay);
    await deliveredAll(events);
    // A new relay starts at the beginning of the log: leave out what earlier tests published.
    const rows = (await received(outbox.pool, outbox.schema)).filter((r) => r.key?.startsWith(`${relay}-`));
    const report = judge(events, rows);
    expect(report.lost).toEqual([]);
    expect(report.unexpected).toEqual([]);
    expect(report.outOfOrder).toEqual([]);
    // Each worker delivered some of it.
    expect(new Set(rows.map((r) => r.worker)).size).toBe(count);
  });

  it('hands the partitions of a killed worker (SIGKILL) to the others after its lease runs out', async () => {
    const relay = 'killed';
    const [a, b, c] = [spawn(relay, 'k-a'), spawn(relay, 'k-b'), spawn(relay, 'k-c')];
    await waitUntil('all three hold partitions', async () => [a, b, c].every((w) => w.owned().size > 0));
    const before = await publishMany(20, 'k1');
    const victim = b.owned();
    b.signal('SIGKILL');
    const after = await publishMany(20, 'k2');
    await deliveredAll([...before, ...after]);
    const survivors = new Set([...a.owned(), ...c.owned()]);
    for (const partition of victim) expect(survivors.has(partition)).toBe(true);
    const report = judge(await inCommitOrder(outbox.db, outbox.schema, [...before, ...after]), await received(outbox.pool, outbox.schema));
    expect(report.lost).toEqual([]);
    expect(report.outOfOrder).toEqual([]);
  });

  it('a worker paused past its lease (SIGSTOP) cannot move a cursor once another worker owns it', async () => {
    const relay = 'paused';
    const a = spawn(relay, 'p-a', 1500);
    await a.waitFor((l) => l.type === 'started');
    await waitUntil('a holds every partition', async () => a.owned().size === partitions);
    a.signal('SIGSTOP');
    // Events written while `a` sleeps: the waiting NOTIFYs make `a` try to relay them when it wakes.
    const events = await publishMany(10, 'p');
    const b = spawn(relay, 'p-b', 1500);
    await waitUntil('b took every partition over', async () => b.owned().size === partitions, 30_000);
    await deliveredAll(events);
    const cursors = async () =>
      (
        await outbox.db.query<{ partition: number; cursor: string }>(
          `SELECT partition, cursor_seq::text || '-' || cursor_id AS cursor FROM "${outbox.schema}".relay_partitions WHERE relay = $1 ORDER BY partition`,
          [relay],
        )
      ).rows;
    const beforeWake = await cursors();
    a.signal('SIGCONT');
    await a.waitFor((l) => l.type === 'lease-lost', 20_000);
    // Awake again, `a` is a live worker and may be given partitions back by the next rebalance, so
    // owners may change; what must not is a cursor: every one is exactly where `b` left it (b is
    // idle: nothing new was written), whatever `a` tried with the page it read before it slept.
    expect(await cursors()).toEqual(beforeWake);
    expect(judge(events, await received(outbox.pool, outbox.schema)).lost).toEqual([]);
  });
});
