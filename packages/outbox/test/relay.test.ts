import {
  cleanup,
  dropRelay,
  comparePositions,
  createRelay,
  encodePosition,
  failed,
  listDeadLetters,
  publish,
  replay,
  retry,
  retryDeadLetters,
  status,
  type OutboxEvent,
  type Relay,
  type RelayEvent,
  type RelayOptions,
} from '@tidings/outbox';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { judge, waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inCommitOrder, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { createSink, received, tableTransport, type FaultRule } from '../../../test/support/table-transport.ts';

let outbox: TestOutbox;
const relays: Relay[] = [];
let relaySeq = 0;

beforeAll(async () => {
  outbox = await freshOutbox('relay', { partitions: 4 });
  await createSink(outbox.pool, outbox.schema);
});
afterEach(async () => {
  await Promise.all(relays.splice(0).map((r) => r.stop({ graceMs: 1000 })));
  await outbox.pool.query(`TRUNCATE "${outbox.schema}".received`);
});
afterAll(async () => {
  await outbox.close();
});

/** Each test relays only its own topic, so the tests share one outbox without seeing each other. */
function startRelay(topic: string, options: Partial<RelayOptions> & { fault?: FaultRule } = {}): { relay: Relay; events: RelayEvent[] } {
  const events: RelayEvent[] = [];
  const relay = createRelay({
    name: `relay-${++relaySeq}`,
    database: outbox.db,
    schema: outbox.schema,
    transport: tableTransport(outbox.pool, outbox.schema, { fault: options.fault }),
    topics: [topic],
    pollIntervalMs: 100,
    leaseTtlMs: 2000,
    heartbeatIntervalMs: 200,
    retry: { minDelayMs: 10, maxDelayMs: 50, retries: 5 },
    onEvent: (e) => events.push(e),
    ...options,
  });
  relays.push(relay);
  return { relay, events };
}

function publishIn(client: pg.PoolClient, topic: string, payloads: unknown[], key?: (i: number) => string): Promise<OutboxEvent[]> {
  return publish(client, payloads.map((payload, i) => ({ topic, payload, key: key?.(i) ?? null })), { schema: outbox.schema });
}

async function arrivals(topic: string) {
  return (await received(outbox.pool, outbox.schema)).filter((r) => r.topic === topic);
}

async function begin(): Promise<pg.PoolClient> {
  const client = await outbox.pool.connect();
  await client.query('BEGIN');
  return client;
}

describe('the relay', () => {
  it('delivers exactly the committed events of out-of-order commits, never a rolled-back one', async () => {
    const topic = 'gap';
    const { relay } = startRelay(topic);
    await relay.start();
    const first = await begin();
    const second = await begin();
    const third = await begin();
    const doomed = await begin();
    const a = await publishIn(first, topic, ['a1', 'a2'], () => 'k');
    const b = await publishIn(second, topic, ['b1'], () => 'k');
    const c = await publishIn(third, topic, ['c1', 'c2'], (i) => `other-${i}`);
    await publishIn(doomed, topic, ['never']);
    // Commit in reverse order, one rolls back, and the first stays open across many polls.
    await third.query('COMMIT');
    await doomed.query('ROLLBACK');
    await second.query('COMMIT');
    // What committed is delivered while `first`, which wrote first, stays open; `first` comes after.
    await waitUntil('the committed events arrived', async () => (await arrivals(topic)).length >= 3);
    expect((await arrivals(topic)).map((r) => r.payload).sort()).toEqual(['b1', 'c1', 'c2']);
    await first.query('COMMIT');
    for (const client of [first, second, third, doomed]) client.release();

    const committed = await inCommitOrder(outbox.db, outbox.schema, [...a, ...b, ...c]);
    const rows = await waitUntil('all committed events arrived', async () => {
      const rows = await arrivals(topic);
      return rows.length >= committed.length && rows;
    });
    await new Promise((r) => setTimeout(r, 300));
    const report = judge(committed, await arrivals(topic));
    expect(report).toEqual({ lost: [], unexpected: [], duplicated: {}, outOfOrder: [] });
    expect(rows.map((r) => r.payload)).not.toContain('never');
  });

  it('delivers committed events at once while an older transaction stays open (no watermark)', async () => {
    const topic = 'held-back';
    // A poll interval far beyond the wait below: the NOTIFY of the commit is what wakes it.
    const { relay } = startRelay(topic, { pollIntervalMs: 120_000 });
    await relay.start();
    await waitUntil('the relay holds every partition', async () => relay.status().partitions.length === 4);
    const older = await begin();
    await older.query('SELECT pg_current_xact_id()'); // an ordinary write transaction: it has an xid
    try {
      const committed = await inTransaction(outbox.pool, (c) => publishIn(c, topic, ['e1', 'e2'], () => 'k'));
      await waitUntil('the events arrived', async () => (await arrivals(topic)).length >= 2, 10_000);
      expect(judge(committed, await arrivals(topic))).toEqual({ lost: [], unexpected: [], duplicated: {}, outOfOrder: [] });
    } finally {
      await older.query('COMMIT');
      older.release();
    }
  });

  it('delivers the same, retries included, when its observer throws on every event', async () => {
    const topic = 'observer-throws';
    let calls = 0;
    let heard = 0;
    const { relay } = startRelay(topic, {
      fault: () => (++calls % 3 === 0 ? retry(new Error('broker busy')) : undefined),
      onEvent: () => {
        heard++;
        throw new Error('observer bug');
      },
    });
    await relay.start();
    const published = await inTransaction(outbox.pool, (c) => publishIn(c, topic, [1, 2, 3, 4, 5, 6], (i) => `key-${i % 2}`));
    await waitUntil('all arrived', async () => new Set((await arrivals(topic)).map((r) => r.event_id)).size === published.length);
    const report = judge(published, await arrivals(topic));
    expect(report.lost).toEqual([]);
    expect(report.outOfOrder).toEqual([]);
    expect(heard).toBeGreaterThan(0);
  });

  it('retries transient failures with backoff and keeps per-key order', async () => {
    const topic = 'flaky';
    let calls = 0;
    const { relay, events } = startRelay(topic, {
      // Every third event sent fails once, retryably.
      fault: () => (++calls % 3 === 0 ? retry(new Error('broker busy')) : undefined),
      retry: { minDelayMs: 5, maxDelayMs: 20, retries: 50 },
    });
    await relay.start();
    const published: OutboxEvent[] = [];
    for (let t = 0; t < 10; t++) {
      published.push(...(await inTransaction(outbox.pool, (c) => publishIn(c, topic, [t, t, t], (i) => `key-${(t + i) % 4}`))));
    }
    await waitUntil('all arrived', async () => new Set((await arrivals(topic)).map((r) => r.event_id)).size === published.length);
    const report = judge(published, await arrivals(topic));
    expect(report.lost).toEqual([]);
    expect(report.unexpected).toEqual([]);
    expect(report.outOfOrder).toEqual([]);
    expect(events.filter((e) => e.type === 'retry').length).toBeGreaterThan(0);
    expect(events.filter((e) => e.type === 'dead-letter')).toEqual([]);
  });

  it('in skip-unordered mode dead-letters a permanent failure, lets its key move on, and delivers it when retried', async () => {
    const topic = 'poison';
    let poisoned = true;
    const { relay, events } = startRelay(topic, {
      onFailure: 'skip-unordered',
      fault: (e) => (poisoned && (e.payload as { bad?: boolean }).bad ? failed(new Error('receiver rejected the payload')) : undefined),
    });
    await relay.start();
    const published = await inTransaction(outbox.pool, (c) =>
      publish(c, [{ topic, key: 'k', payload: { n: 1 } }, { topic, key: 'k', payload: { n: 2, bad: true } }, { topic, key: 'k', payload: { n: 3 } }], {
        schema: outbox.schema,
      }),
    );
    await waitUntil('the others arrived', async () => (await arrivals(topic)).length === 2);
    const letters = await listDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name });
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ eventId: published[1]!.eventId, status: 'dead', payload: { n: 2, bad: true }, parksKey: false, parkedEvents: 0 });
    expect(letters[0]!.errors).toEqual([expect.objectContaining({ attempt: 1, message: 'receiver rejected the payload' })]);
    expect(events.some((e) => e.type === 'dead-letter' && e.eventId === published[1]!.eventId)).toBe(true);

    poisoned = false;
    expect(await retryDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name })).toBe(1);
    await waitUntil('the dead letter arrived', async () => (await arrivals(topic)).some((r) => r.event_id === published[1]!.eventId));
    await waitUntil('the dead letter was removed', async () => (await listDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name })).length === 0);
  });

  it('dead-letters an event whose retries run out, with every attempt recorded', async () => {
    const topic = 'exhausted';
    const { relay } = startRelay(topic, {
      fault: (e) => (e.payload === 'stuck' ? retry(new Error('timeout')) : undefined),
      retry: { minDelayMs: 1, maxDelayMs: 5, retries: 3 },
    });
    await relay.start();
    // 'after' has a key of its own: the stuck event's key is parked behind it.
    await inTransaction(outbox.pool, (c) => publishIn(c, topic, ['before', 'stuck', 'after'], (i) => (i === 2 ? 'other' : 'k')));
    await waitUntil('the others arrived', async () => (await arrivals(topic)).length === 2);
    // 'after' may be in another partition and arrive before the stuck event's retries run out.
    const [letter] = await waitUntil('the dead letter', async () => {
      const letters = await listDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name });
      return letters.length > 0 && letters;
    });
    expect(letter!.errors.map((e) => e.attempt)).toEqual([1, 2, 3, 4]);
    expect((await arrivals(topic)).map((r) => r.payload).sort()).toEqual(['after', 'before']); // two keys: no order between them
  });

  it('in block mode holds the partition back instead of dead-lettering', async () => {
    const topic = 'blocked';
    let broken = true;
    const { relay } = startRelay(topic, {
      onFailure: 'block',
      fault: (e) => (broken && e.payload === 'stuck' ? failed(new Error('rejected')) : undefined),
      retry: { minDelayMs: 5, maxDelayMs: 20, retries: 1 },
    });
    await relay.start();
    await inTransaction(outbox.pool, (c) => publishIn(c, topic, ['before', 'stuck', 'after'], () => 'k'));
    await waitUntil('the first arrived', async () => (await arrivals(topic)).length === 1);
    await new Promise((r) => setTimeout(r, 500));
    expect((await arrivals(topic)).map((r) => r.payload)).toEqual(['before']);
    expect(await listDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name })).toEqual([]);
    broken = false;
    await waitUntil('the rest arrived in order', async () => (await arrivals(topic)).map((r) => r.payload).join() === 'before,stuck,after');
  });

  it('replays from a past time and from a cursor', async () => {
    const topic = 'replayed';
    const { relay } = startRelay(topic);
    await relay.start();
    const old = await inTransaction(outbox.pool, (c) => publishIn(c, topic, ['old'], () => 'k'));
    await new Promise((r) => setTimeout(r, 50));
    const since = new Date();
    await new Promise((r) => setTimeout(r, 50));
    const recent = await inTransaction(outbox.pool, (c) => publishIn(c, topic, ['new-1', 'new-2'], () => 'k'));
    await waitUntil('first delivery', async () => (await arrivals(topic)).length === 3);

    expect(await replay(outbox.db, { schema: outbox.schema, relay: relay.name, from: since })).toBeGreaterThan(0);
    await waitUntil('replayed by time', async () => (await arrivals(topic)).length === 5);
    expect((await arrivals(topic)).map((r) => r.payload)).toEqual(['old', 'new-1', 'new-2', 'new-1', 'new-2']);

    await replay(outbox.db, { schema: outbox.schema, relay: relay.name, from: encodePosition((await inCommitOrder(outbox.db, outbox.schema, old))[0]!.position) });
    await waitUntil('replayed by cursor', async () => (await arrivals(topic)).length === 7);
    expect((await arrivals(topic)).slice(5).map((r) => r.event_id)).toEqual(recent.map((e) => e.eventId));
  });

  it('stops gracefully: gives its leases back at once', async () => {
    const topic = 'graceful';
    const { relay } = startRelay(topic);
    await relay.start();
    await waitUntil('partitions taken', async () => relay.status().partitions.length === 4);
    await relay.stop();
    const { rows } = await outbox.db.query(
      `SELECT owner FROM "${outbox.schema}".relay_partitions WHERE relay = $1 AND owner IS NOT NULL`,
      [relay.name],
    );
    expect(rows).toEqual([]);
  });
});

describe('status', () => {
  it('reports lag, lease owners, dead letters and a stalled relay; an open transaction holds nothing back', async () => {
    const topic = 'observed';
    const { relay } = startRelay(topic, { fault: (e) => (e.payload === 'bad' ? failed(new Error('no')) : undefined) });
    await relay.start();
    await inTransaction(outbox.pool, (c) => publishIn(c, topic, ['ok', 'bad'], () => 'k'));
    await waitUntil('delivered and dead-lettered', async () => (await listDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name })).length === 1);
    const open = await begin();
    await publishIn(open, 'elsewhere', ['open, not yet committing']);
    await new Promise((r) => setTimeout(r, 1100));
    const live = await status(outbox.db, { schema: outbox.schema });
    const mine = live.relays.find((r) => r.relay === relay.name)!;
    expect(mine.deadLetters).toBe(1);
    expect(mine.parkedKeys).toBe(1);
    expect(mine.workers.map((w) => w.worker)).toEqual([relay.worker]);
    expect(mine.partitions.every((p) => p.owner === relay.worker)).toBe(true);
    expect(mine.stalled).toBe(false);
    expect(live.feeds).toEqual({ events: 0, seconds: 0, stalled: false, holders: [] });
    await open.query('ROLLBACK');
    open.release();

    await relay.stop();
    await inTransaction(outbox.pool, (c) => publishIn(c, topic, ['while stopped'], () => 'k'));
    const stopped = (await status(outbox.db, { schema: outbox.schema })).relays.find((r) => r.relay === relay.name)!;
    expect(stopped.lagEvents).toBeGreaterThanOrEqual(1);
    expect(stopped.workers).toEqual([]);
    expect(stopped.partitions.every((p) => p.owner === null)).toBe(true);
    expect(stopped.stalled).toBe(true);
  });
});

describe('retention', () => {
  it('deletes old events only once every relay has passed them', async () => {
    // An outbox of its own: the stopped relays of the tests above would hold retention back.
    const own = await freshOutbox('retention', { partitions: 2 });
    await createSink(own.pool, own.schema);
    const make = (name: string, fault?: FaultRule) =>
      createRelay({
        name,
        database: own.db,
        schema: own.schema,
        transport: tableTransport(own.pool, own.schema, { fault }),
        pollIntervalMs: 50,
        heartbeatIntervalMs: 200,
        leaseTtlMs: 2000,
        retry: { retries: 1000, minDelayMs: 20, maxDelayMs: 20 },
      });
    const fast = make('fast');
    const slow = make('slow', () => retry(new Error('down')));
    relays.push(fast, slow);
    await fast.start();
    await slow.start();
    const events = await inTransaction(own.pool, (c) =>
      publish(c, [{ topic: 't', key: 'a', payload: 1 }, { topic: 't', key: 'b', payload: 2 }], { schema: own.schema }),
    );
    await waitUntil('the fast relay delivered', async () => (await received(own.pool, own.schema)).length === 2);
    const present = async () =>
      (await own.db.query(`SELECT 1 FROM "${own.schema}".events WHERE event_id = ANY($1)`, [events.map((e) => e.eventId)])).rowCount;
    expect((await cleanup(own.db, { schema: own.schema, retentionMs: 1 })).events).toBe(0);
    expect(await present()).toBe(2);
    // A relay that is still within the retention period keeps its events too.
    await slow.stop({ graceMs: 100 });
    await dropRelay(own.db, { schema: own.schema, relay: 'slow' });
    expect((await cleanup(own.db, { schema: own.schema, retentionMs: 3_600_000 })).events).toBe(0);
    expect((await cleanup(own.db, { schema: own.schema, retentionMs: 1 })).events).toBe(2);
    expect(await present()).toBe(0);
    const { rows } = await own.db.query(`SELECT partition FROM "${own.schema}".retention_horizon ORDER BY partition`);
    expect(rows.length).toBeGreaterThan(0);
    await fast.stop();
    await own.close();
  });
});
