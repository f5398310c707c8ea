import { cleanup, publish, readFeed, scheduleRetention, ConfigError, CursorExpiredError, type CleanupResult } from '@tidings/outbox';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inCommitOrder, inTransaction, type TestOutbox } from '../../../test/support/db.ts';

let outbox: TestOutbox;
let s: string;
beforeAll(async () => {
  outbox = await freshOutbox('cleanup', { partitions: 1 });
  s = `"${outbox.schema}"`;
});
afterAll(() => outbox.close());
beforeEach(async () => {
  await outbox.db.query(`TRUNCATE ${s}.events, ${s}.commits, ${s}.retention_horizon, ${s}.relay_partitions, ${s}.dead_letters, ${s}.parked_keys`);
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
    expect((await cleanup(outbox.db, { schema: outbox.schema })).events).toBe(2);
    expect(await left()).toEqual([3, 4, 5]);
    expect(await commitRows()).toBe(3);
    const { rows } = await outbox.db.query(`SELECT seq::text, id::text FROM ${s}.retention_horizon`);
    expect(rows).toEqual([{ seq: events[1]!.position.seq, id: events[1]!.position.id }]);
    // A feed cursor inside the deleted prefix has expired; one at its end has not.
    await expect(readFeed(outbox.db, outbox.schema, { after: events[0]!.position, limit: 10 })).rejects.toBeInstanceOf(CursorExpiredError);
    expect((await readFeed(outbox.db, outbox.schema, { after: events[1]!.position, limit: 10 })).events.map((e) => e.payload)).toEqual([3000, 4000, 5000]);

    await age([3], 8);
    expect((await cleanup(outbox.db, { schema: outbox.schema })).events).toBe(3);
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
    expect((await cleanup(outbox.db, { schema: outbox.schema })).events).toBe(2);
    expect(await left()).toEqual([3, 4]);
    // Held back, a partition costs one look per call, and nothing more goes.
    expect((await cleanup(outbox.db, { schema: outbox.schema })).events).toBe(0);
    await outbox.db.query(`DELETE FROM ${s}.relay_partitions WHERE relay = 'slow'`);
    expect((await cleanup(outbox.db, { schema: outbox.schema })).events).toBe(2);
  });

  it('goes through transactions of many events in small batches, resuming inside a transaction, and two cleanups at once delete each event once', async () => {
    await commits([1, 2, 3], 40);
    await age([1, 2, 3], 8);
    const [a, b] = (await Promise.all([cleanup(outbox.db, { schema: outbox.schema, batchSize: 7 }), cleanup(outbox.db, { schema: outbox.schema, batchSize: 7 })])).map((r) => r.events);
    // The second may find the partition busy and leave it to the first.
    expect(a! + b!).toBeLessThanOrEqual(120);
    expect(a! + b! + (await cleanup(outbox.db, { schema: outbox.schema, batchSize: 7 })).events).toBe(120);
    expect(await left()).toEqual([]);
    expect(await commitRows()).toBe(0);
  });

  it('reads one batch at most per partition and call, never the whole table: nothing to delete costs no more than a batch', async () => {
    await commits([1, 2, 3], 200);
    await age([1], 8);
    expect((await cleanup(outbox.db, { schema: outbox.schema, batchSize: 50 })).events).toBe(200);
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
      expect((await cleanup(client, { schema: outbox.schema, batchSize: 50 })).events).toBe(0);
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

/** A dead letter of relay `r` for event `id`, dead for `days`, with `status`. */
async function deadLetter(id: string, days: number, status = 'dead', key: string | null = null): Promise<void> {
  await outbox.db.query(
    `INSERT INTO ${s}.dead_letters (relay, partition, event_id, topic, key, payload, headers, event_created_at, errors, status, dead_at)
     VALUES ('r', 0, $1, 't', $4, '1', '{}', now(), '[]', $3, now() - $2 * interval '1 day')`,
    [id, days, status, key],
  );
}
const deadLeft = async () => (await outbox.db.query<{ event_id: string }>(`SELECT event_id FROM ${s}.dead_letters ORDER BY event_id`)).rows.map((r) => r.event_id);

describe('dead letter retention', () => {
  it('keeps dead letters unless asked; asked, deletes those dead longer than the retention, oldest first, in batches', async () => {
    for (let i = 0; i < 25; i++) await deadLetter(`old-${String(i).padStart(2, '0')}`, 40);
    await deadLetter('young', 2);
    expect(await cleanup(outbox.db, { schema: outbox.schema })).toEqual({ events: 0, deadLetters: 0 });
    expect(await deadLeft()).toHaveLength(26);
    expect(await cleanup(outbox.db, { schema: outbox.schema, deadLetterRetentionMs: 30 * 86_400_000, batchSize: 10 })).toEqual({ events: 0, deadLetters: 25 });
    expect(await deadLeft()).toEqual(['young']);
  });

  it('never deletes one being retried, nor one that keeps its key parked: that stays an operator decision', async () => {
    await deadLetter('retrying', 40, 'retrying');
    await deadLetter('retry', 40, 'retry');
    await deadLetter('parks', 40, 'dead', 'k');
    await deadLetter('plain', 40, 'dead', 'k2');
    await outbox.db.query(`INSERT INTO ${s}.parked_keys (relay, partition, key, event_id) VALUES ('r', 0, 'k', 'parks')`);
    expect((await cleanup(outbox.db, { schema: outbox.schema, deadLetterRetentionMs: 86_400_000 })).deadLetters).toBe(1);
    expect(await deadLeft()).toEqual(['parks', 'retry', 'retrying']);
  });

  it('refuses a bad retention before deleting anything, saying what to pass', async () => {
    await deadLetter('old', 40);
    for (const bad of [-1, 1.5, Number.NaN, '30' as unknown as number]) {
      const error = await cleanup(outbox.db, { schema: outbox.schema, deadLetterRetentionMs: bad }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect(error).toMatchObject({ option: 'deadLetterRetentionMs' });
      expect(String((error as Error).message)).toMatch(/whole number/);
    }
    expect(await deadLeft()).toEqual(['old']);
  });

  it('stops between batches when its signal aborts, and counts what it deleted', async () => {
    await commits([1, 2, 3, 4, 5, 6]);
    await age([1, 2, 3, 4, 5, 6], 8);
    const stop = new AbortController();
    const result = await cleanup(outbox.db, { schema: outbox.schema, batchSize: 2, signal: stop.signal, onProgress: (n) => n >= 4 && stop.abort() });
    expect(result.events).toBe(4);
    expect(await left()).toEqual([5, 6]);
  });
});

describe('scheduled retention', () => {
  it('runs cleanup again and again until stopped, reporting each run', async () => {
    const runs: CleanupResult[] = [];
    await deadLetter('old', 40);
    await commits([1, 2]);
    await age([1, 2], 8);
    const schedule = scheduleRetention(outbox.db, { schema: outbox.schema, intervalMs: 100, deadLetterRetentionMs: 86_400_000, onRun: (r) => runs.push(r) });
    try {
      await waitUntil('two runs', () => runs.length >= 2 || undefined);
      expect(runs[0]).toEqual({ events: 2, deadLetters: 1 });
      // A later commit, old enough, goes in a later run.
      await commits([3]);
      await age([3], 8);
      await waitUntil('the later commit deleted', () => runs.some((r) => r.events === 1) || undefined);
    } finally {
      await schedule.stop();
    }
    const after = runs.length;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(runs.length).toBe(after);
    expect(await left()).toEqual([]);
  });

  it('reports a failed run and goes on; checks its options before it starts', async () => {
    const errors: Error[] = [];
    const broken = { query: async () => Promise.reject(new Error('connection refused')) };
    const schedule = scheduleRetention(broken, { intervalMs: 100, onError: (e) => errors.push(e) });
    try {
      await waitUntil('two failed runs', () => errors.length >= 2 || undefined);
    } finally {
      await schedule.stop();
    }
    expect(errors[0]!.message).toMatch(/connection refused/);
    expect(() => scheduleRetention(outbox.db, { intervalMs: 10 })).toThrow(ConfigError);
    expect(() => scheduleRetention(outbox.db, { retentionMs: 0 })).toThrow(/retentionMs/);
    expect(() => scheduleRetention(outbox.db, { onRun: 'log' as unknown as () => void })).toThrow(/onRun/);
  });
});
