import { publish, status, type Executor } from '@tidings/outbox';
import fc from 'fast-check';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';

const partitions = 3;
let outbox: TestOutbox;
let s: string;
beforeAll(async () => {
  outbox = await freshOutbox('status_lag', { partitions });
  s = `"${outbox.schema}"`;
});
afterAll(() => outbox.close());
beforeEach(async () => {
  await outbox.db.query(`TRUNCATE ${s}.events, ${s}.commits, ${s}.relay_partitions, ${s}.relay_workers, ${s}.dead_letters, ${s}.parked_keys, ${s}.parked_events`);
});

const topics = ['orders.created', 'orders.paid', 'users.joined', 'a_b'] as const;
const tenants = [null, 't1', 't2'] as const;

interface Filter {
  readonly topics?: readonly string[] | null;
  readonly tenant?: string | null;
}

/** The filter's meaning, written independently of the SQL: `x.*` is a prefix, anything else exact. */
function matches(filter: Filter | undefined, event: { topic: string; tenant: string | null }): boolean {
  if (!filter) return true;
  const byTopic = !filter.topics || filter.topics.length === 0 || filter.topics.some((t) => (t.endsWith('*') ? event.topic.startsWith(t.slice(0, -1)) : event.topic === t));
  return byTopic && (filter.tenant == null || event.tenant === filter.tenant);
}

const world = fc.record({
  transactions: fc.array(
    fc.array(fc.record({ topic: fc.constantFrom(...topics), tenant: fc.constantFrom(...tenants), key: fc.constantFrom('k1', 'k2', 'k3', 'k4', 'k5') }), { minLength: 1, maxLength: 4 }),
    { minLength: 0, maxLength: 12 },
  ),
  relays: fc.array(
    fc.record({
      filter: fc.option(
        fc.record({
          topics: fc.option(fc.subarray(['orders.*', 'users.joined', 'a_b', 'a%', 'nothing.*'], { minLength: 1 }), { nil: null }),
          tenant: fc.option(fc.constantFrom('t1', 't2'), { nil: null }),
        }),
        { nil: undefined },
      ),
      // Where each partition's cursor stands, as a fraction of that partition's events (0: before all).
      cursors: fc.array(fc.nat({ max: 100 }), { minLength: partitions, maxLength: partitions }),
    }),
    { minLength: 1, maxLength: 6 },
  ),
  limit: fc.constantFrom(1, 2, 3, 5, 1_000_000),
});

describe('status: lag per relay and partition', () => {
  it('counts, for every cursor, the events after it that the relay delivers (capped at lagCountLimit), and the age of the oldest', async () => {
    await fc.assert(
      fc.asyncProperty(world, async ({ transactions, relays, limit }) => {
        await outbox.db.query(`TRUNCATE ${s}.events, ${s}.commits, ${s}.relay_partitions`);
        for (const events of transactions) {
          await inTransaction(outbox.pool, (c) => publish(c, events.map((e, i) => ({ ...e, payload: i })), { schema: outbox.schema }));
        }
        // Every event gets its own age: older along the log, 10 s apart, so the oldest after a cursor is unambiguous.
        const { rows: log } = await outbox.db.query<{ partition: number; seq: string; id: string; topic: string; tenant: string | null; age: number }>(
          `WITH l AS (
             SELECT e.partition, c.seq, e.id, e.topic, e.tenant, row_number() OVER (ORDER BY c.seq, e.id) AS n
             FROM ${s}.events e JOIN ${s}.commits c ON c.partition = e.partition AND c.tx_id = e.tx_id AND e.id BETWEEN c.first_id AND c.last_id
           )
           UPDATE ${s}.events e SET created_at = now() - (10000 - l.n * 10) * interval '1 second'
           FROM l WHERE e.id = l.id
           RETURNING l.partition, l.seq::text, l.id::text, l.topic, l.tenant, (10000 - l.n * 10)::int AS age`,
        );
        const inPartition = (p: number) => log.filter((e) => e.partition === p).sort((a, b) => Number(BigInt(a.seq) - BigInt(b.seq)) || Number(BigInt(a.id) - BigInt(b.id)));
        const filters: Record<string, Filter> = {};
        const expected: Record<string, { lag: number; age: number }[]> = {};
        for (const [r, relay] of relays.entries()) {
          const name = `relay-${r}`;
          if (relay.filter) filters[name] = relay.filter;
          expected[name] = [];
          for (let p = 0; p < partitions; p++) {
            const events = inPartition(p);
            const at = Math.floor((relay.cursors[p]! / 100) * events.length); // events delivered
            const cursor = at === 0 ? { seq: '0', id: '0' } : events[at - 1]!;
            await outbox.db.query(`INSERT INTO ${s}.relay_partitions (relay, partition, cursor_seq, cursor_id) VALUES ($1, $2, $3, $4)`, [name, p, cursor.seq, cursor.id]);
            const behind = events.slice(at).filter((e) => matches(relay.filter, e));
            expected[name]!.push({ lag: Math.min(behind.length, limit), age: behind[0]?.age ?? 0 });
          }
        }
        const report = await status(outbox.db, { schema: outbox.schema, filters, lagCountLimit: limit });
        const seen: Record<string, { lag: number; age: number }[]> = {};
        for (const relay of report.relays) {
          seen[relay.relay] = relay.partitions.map((p) => ({ lag: p.lagEvents, age: p.lagSeconds }));
          expect(relay.lagEvents).toBe(relay.partitions.reduce((sum, p) => sum + p.lagEvents, 0));
        }
        expect(Object.keys(seen).sort()).toEqual(Object.keys(expected).sort());
        for (const [name, want] of Object.entries(expected)) {
          const got = seen[name]!;
          expect(got.map((g) => g.lag), name).toEqual(want.map((w) => w.lag));
          // The age is read a moment after it was set: within a few seconds, and 0 exactly when caught up.
          for (const [p, w] of want.entries()) {
            if (w.lag === 0) expect(got[p]!.age, `${name} partition ${p}`).toBe(0);
            else expect(Math.abs(got[p]!.age - w.age), `${name} partition ${p}: ${got[p]!.age} s, expected ${w.age} s`).toBeLessThan(5);
          }
        }
      }),
      { numRuns: 40 },
    );
  }, 120_000);

  it('issues the same number of statements for 1 relay and for 300', async () => {
    await inTransaction(outbox.pool, (c) => publish(c, Array.from({ length: 30 }, (_, i) => ({ topic: 'orders.created', key: `k${i}`, payload: i })), { schema: outbox.schema }));
    const counted = (): Executor & { statements: number } => {
      const executor = {
        statements: 0,
        query: ((text: string, params?: readonly unknown[]) => {
          executor.statements++;
          return outbox.db.query(text, params);
        }) as Executor['query'],
      };
      return executor;
    };
    const register = (relays: number) =>
      outbox.db.query(
        `INSERT INTO ${s}.relay_partitions (relay, partition, cursor_seq, cursor_id)
         SELECT 'relay-' || r, p, 0, 0 FROM generate_series(0, $1::int - 1) r, generate_series(0, $2::int - 1) p ON CONFLICT DO NOTHING`,
        [relays, partitions],
      );
    const filters = Object.fromEntries(Array.from({ length: 300 }, (_, r) => [`relay-${r}`, r % 2 ? { topics: [`endpoint-${r}.*`] } : {}]));
    await register(1);
    const one = counted();
    const small = await status(one, { schema: outbox.schema, filters });
    await register(300);
    const many = counted();
    const large = await status(many, { schema: outbox.schema, filters });
    expect(small.relays).toHaveLength(1);
    expect(large.relays).toHaveLength(300);
    expect(large.relays.filter((r) => r.lagEvents === 30)).toHaveLength(150);
    expect(large.relays.filter((r) => r.lagEvents === 0)).toHaveLength(150);
    expect(many.statements).toBe(one.statements);
  });

  it('calls a relay abandoned when it is behind, has no live worker and has not moved for abandonedAfterSeconds', async () => {
    await inTransaction(outbox.pool, (c) => publish(c, [{ topic: 'orders.created', key: 'k', payload: 1 }], { schema: outbox.schema }));
    await outbox.db.query(
      `INSERT INTO ${s}.relay_partitions (relay, partition, cursor_seq, cursor_id, updated_at)
       SELECT r, p, CASE WHEN r = 'caught-up' THEN 9223372036854775807 ELSE 0 END, 0, now() - interval '2 days'
       FROM unnest(ARRAY['gone', 'caught-up', 'running', 'recent']) r, generate_series(0, $1::int - 1) p`,
      [partitions],
    );
    await outbox.db.query(`UPDATE ${s}.relay_partitions SET updated_at = now() - interval '1 hour' WHERE relay = 'recent'`);
    await outbox.db.query(`INSERT INTO ${s}.relay_workers (relay, worker, expires_at) VALUES ('running', 'w1', now() + interval '1 minute')`);
    const report = await status(outbox.db, { schema: outbox.schema });
    const abandoned = Object.fromEntries(report.relays.map((r) => [r.relay, r.abandoned]));
    expect(abandoned).toEqual({ gone: true, 'caught-up': false, running: false, recent: false });
    const stricter = await status(outbox.db, { schema: outbox.schema, abandonedAfterSeconds: 60 });
    expect(stricter.relays.filter((r) => r.abandoned).map((r) => r.relay).sort()).toEqual(['gone', 'recent']);
  });
});
