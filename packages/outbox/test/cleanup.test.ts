import { cleanup, publish, readFeed, CursorExpiredError } from '@tidings/outbox';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freshOutbox, inCommitOrder, inTransaction, type TestOutbox } from '../../../test/support/db.ts';

let outbox: TestOutbox;
let s: string;
beforeAll(async () => {
  outbox = await freshOutbox('cleanup', { partitions: 1 });
  s = `"${outbox.schema}"`;
});
afterAll(() => outbox.close());
beforeEach(async () => {
  await outbox.db.query(`TRUNCATE ${s}.events, ${s}.commits, ${s}.retention_horizon, ${s}.relay_partitions`);
});

/** Publishes one transaction per payload (one event each, or `size` events) and returns them in commit order. */
async function commits(payloads: number[], size = 1) {
  const published = [];
  for (const p of payloads) {
    published.push(...(await inTransaction(outbox.pool, (c) => publish(c, Array.from({ length: size }, (_, i) => ({ topic: 'retention', payload: p * 1000 + i })), { schema: outbox.schema }))));
  }
  return inCommitOrder(outbox.db, outbox.schema, published);
}

async function age(payloads: number[], days: number): Promise<void> {
  await outbox.db.query(`UPDATE ${s}.events SET created_at = now() - $2 * interval '1 day' WHERE (payload::text::int / 1000) = ANY($1)`, [payloads, days]);
}

const left = async () => (await outbox.db.query<{ p: number }>(`SELECT payload::text::int / 1000 AS p FROM ${s}.events ORDER BY id`)).rows.map((r) => r.p);
const commitRows = async () => Number((await outbox.db.query<{ n: string }>(`SELECT count(*) AS n FROM ${s}.commits`)).rows[0]!.n);

describe('retention', () => {
  it('deletes a prefix of the log: it stops at the first event too young to go, and the horizon names exactly what is gone', async () => {
    const events = await commits([1, 2, 3, 4, 5]);
    await age([1, 2, 4, 5], 8);
    expect(await cleanup(outbox.db, { schema: outbox.schema })).toBe(2);
    expect(await left()).toEqual([3, 4, 5]);
    expect(await commitRows()).toBe(3);
    const { rows } = await outbox.db.query(`SELECT seq::text, id::text FROM ${s}.retention_horizon`);
    expect(rows).toEqual([{ seq: events[1]!.position.seq, id: events[1]!.position.id }]);
    // A feed cursor inside the deleted prefix has expired; one at its end has not.
    await expect(readFeed(outbox.db, outbox.schema, { after: events[0]!.position, limit: 10 })).rejects.toBeInstanceOf(CursorExpiredError);
    expect((await readFeed(outbox.db, outbox.schema, { after: events[1]!.position, limit: 10 })).events.map((e) => e.payload)).toEqual([3000, 4000, 5000]);

    await age([3], 8);
    expect(await cleanup(outbox.db, { schema: outbox.schema })).toBe(3);
    expect(await left()).toEqual([]);
    expect(await commitRows()).toBe(0);
  });

  it('stops at the lowest relay cursor of the partition', async () => {
    const events = await commits([1, 2, 3, 4]);
    await age([1, 2, 3, 4], 8);
    await outbox.db.query(`INSERT INTO ${s}.relay_partitions (relay, partition, cursor_seq, cursor_id) VALUES ('fast', 0, $1, $2), ('slow', 0, $3, $4)`, [
      events[3]!.position.seq,
      events[3]!.position.id,
      events[1]!.position.seq,
      events[1]!.position.id,
    ]);
    expect(await cleanup(outbox.db, { schema: outbox.schema })).toBe(2);
    expect(await left()).toEqual([3, 4]);
    // Held back, a partition costs one look per call, and nothing more goes.
    expect(await cleanup(outbox.db, { schema: outbox.schema })).toBe(0);
    await outbox.db.query(`DELETE FROM ${s}.relay_partitions WHERE relay = 'slow'`);
    expect(await cleanup(outbox.db, { schema: outbox.schema })).toBe(2);
  });

  it('goes through transactions of many events in small batches, resuming inside a transaction, and two cleanups at once delete each event once', async () => {
    await commits([1, 2, 3], 40);
    await age([1, 2, 3], 8);
    const [a, b] = await Promise.all([cleanup(outbox.db, { schema: outbox.schema, batchSize: 7 }), cleanup(outbox.db, { schema: outbox.schema, batchSize: 7 })]);
    // The second may find the partition busy and leave it to the first.
    expect(a + b).toBeLessThanOrEqual(120);
    expect(a + b + (await cleanup(outbox.db, { schema: outbox.schema, batchSize: 7 }))).toBe(120);
    expect(await left()).toEqual([]);
    expect(await commitRows()).toBe(0);
  });

  it('reads one batch at most per partition and call, never the whole table: nothing to delete costs no more than a batch', async () => {
    await commits([1, 2, 3], 200);
    await age([1], 8);
    expect(await cleanup(outbox.db, { schema: outbox.schema, batchSize: 50 })).toBe(200);
    // pg_stat_xact_user_tables counts what this backend read and has not reported yet: the
    // difference across the call, on one connection, is what the call read.
    const read = await inTransaction(outbox.pool, async (client) => {
      const counters = async () =>
        (
          await client.query<{ seq: string; fetched: string }>(
            `SELECT seq_tup_read::text AS seq, idx_tup_fetch::text AS fetched FROM pg_stat_xact_user_tables WHERE relid = '${s}.events'::regclass`,
          )
        ).rows[0] ?? { seq: '0', fetched: '0' };
      const before = await counters();
      expect(await cleanup(client, { schema: outbox.schema, batchSize: 50 })).toBe(0);
      const after = await counters();
      return { seq: Number(after.seq) - Number(before.seq), fetched: Number(after.fetched) - Number(before.fetched) };
    });
    expect(read.seq).toBe(0);
    expect(read.fetched).toBeGreaterThan(0);
    // At most a batch from each of the two transactions left (the sort by commit looks at both).
    expect(read.fetched).toBeLessThanOrEqual(2 * 50 + 1);
    expect(await left()).toEqual([...Array(200).fill(2), ...Array(200).fill(3)]);
  });
});
