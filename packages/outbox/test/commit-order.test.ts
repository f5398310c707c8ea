import { createRelay, logStart, publish, readFeed, readPartition, type OutboxEvent, type Position, type Relay } from '@tidings/outbox';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, type TestOutbox } from '../../../test/support/db.ts';
import { createSink, received, tableTransport } from '../../../test/support/table-transport.ts';

let outbox: TestOutbox;

beforeAll(async () => {
  outbox = await freshOutbox('commit_order', { partitions: 2 });
  await outbox.pool.query(`CREATE TABLE "${outbox.schema}".orders (id text PRIMARY KEY, state text NOT NULL)`);
  await outbox.pool.query(`CREATE TABLE "${outbox.schema}".audit (id serial PRIMARY KEY, note text NOT NULL)`);
  await createSink(outbox.pool, outbox.schema);
});
afterAll(async () => {
  await outbox.close();
});

async function begin(): Promise<pg.PoolClient> {
  const client = await outbox.pool.connect();
  await client.query('BEGIN');
  return client;
}

async function backendPid(client: pg.PoolClient): Promise<number> {
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return rows[0]!.pid;
}

/** Waits until the backend `pid` is blocked on a lock, as PostgreSQL itself reports it. */
async function waitUntilBlocked(pid: number): Promise<void> {
  await waitUntil('the transaction to wait on the row lock', async () => {
    const { rows: waiting } = await outbox.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`,
      [pid],
    );
    return waiting[0]!.n === 1;
  });
}

/**
 * The reproduction of issue 15: T1 gets its transaction id first (an unrelated audit row), then
 * waits on T2's row lock on order K; T2 sets K to `paid` and commits; T1 then sets K to `shipped`
 * and commits. The row says `shipped`, so every reader must deliver `paid` before `shipped`.
 */
async function earlyIdLateCommit(key: string, topic: string): Promise<void> {
  const { schema } = outbox;
  await outbox.pool.query(`INSERT INTO "${schema}".orders VALUES ($1, 'new')`, [key]);
  const t1 = await begin();
  const t2 = await begin();
  try {
    const t1Pid = await backendPid(t1);
    await t1.query(`INSERT INTO "${schema}".audit (note) VALUES ('t1 looks at the order')`);
    await t2.query(`UPDATE "${schema}".orders SET state = 'paid' WHERE id = $1`, [key]);
    const t1Update = t1.query(`UPDATE "${schema}".orders SET state = 'shipped' WHERE id = $1`, [key]);
    await waitUntilBlocked(t1Pid);
    await publish(t2, { topic, key, payload: 'paid' }, { schema });
    await t2.query('COMMIT');
    await t1Update;
    await publish(t1, { topic, key, payload: 'shipped' }, { schema });
    await t1.query('COMMIT');
  } finally {
    t1.release();
    t2.release();
  }
  const { rows } = await outbox.pool.query<{ state: string }>(`SELECT state FROM "${schema}".orders WHERE id = $1`, [key]);
  expect(rows[0]!.state).toBe('shipped');
}

async function readWholePartition(partition: number, topic: string): Promise<OutboxEvent[]> {
  const events: OutboxEvent[] = [];
  let after: Position = logStart;
  for (;;) {
    const page = await readPartition(outbox.db, outbox.schema, { partition, after, limit: 1, topics: [topic] });
    events.push(...page.events);
    after = page.scannedTo;
    if (page.events.length === 0) return events;
  }
}

describe('per-key order is the commit order of the transactions', () => {
  it('a transaction that got its id early and committed late is read after the one it waited for', async () => {
    await earlyIdLateCommit('order-1', 'order.read');
    const [paid] = await waitUntil('both events to be readable', async () => {
      const events = [...(await readWholePartition(0, 'order.read')), ...(await readWholePartition(1, 'order.read'))];
      return events.length === 2 ? [events] : undefined;
    });
    expect(paid.map((e) => e.payload)).toEqual(['paid', 'shipped']);
  });

  it('the feed (SSE, polling) delivers them in commit order too', async () => {
    await earlyIdLateCommit('order-2', 'order.feed');
    const [events] = await waitUntil('both events in the feed', async () => {
      const page = await readFeed(outbox.db, outbox.schema, { after: 'start', limit: 100, topics: ['order.feed'] });
      return page.events.length === 2 ? [page.events] : undefined;
    });
    expect(events.map((e) => e.payload)).toEqual(['paid', 'shipped']);
  });

  it('a relay delivers them in commit order', async () => {
    await earlyIdLateCommit('order-3', 'order.relay');
    const relay: Relay = createRelay({
      name: 'commit-order',
      database: outbox.db,
      schema: outbox.schema,
      transport: tableTransport(outbox.pool, outbox.schema),
      topics: ['order.relay'],
      pollIntervalMs: 50,
    });
    try {
      await relay.start();
      const [rows] = await waitUntil('both events delivered', async () => {
        const got = await received(outbox.pool, outbox.schema);
        return got.length === 2 ? [got] : undefined;
      });
      expect(rows.map((row) => row.payload)).toEqual(['paid', 'shipped']);
    } finally {
      await relay.stop({ graceMs: 1000 });
    }
  });
});
