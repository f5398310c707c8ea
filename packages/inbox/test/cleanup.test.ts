import { cleanupInbox, ConfigError, inbox, SchemaMissingError } from '@tidings/inbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshSchema, type TestDb } from './support.ts';

let t: TestDb;

beforeAll(async () => {
  t = await freshSchema();
});
afterAll(async () => {
  await t?.drop();
});

/** Inserts dedup marks for `consumer` received `ageMs` ago (by the database's clock). */
async function marks(consumer: string, count: number, ageMs: number, prefix = `${ageMs}`): Promise<void> {
  await t.pool.query(
    `INSERT INTO ${t.schema}.inbox (consumer, event_id, received_at)
     SELECT $1, $2 || '-' || n, now() - $3::double precision * interval '1 millisecond' FROM generate_series(1, $4) n`,
    [consumer, prefix, ageMs, count],
  );
}

async function remaining(consumer: string): Promise<string[]> {
  const { rows } = await t.pool.query<{ event_id: string }>(
    `SELECT event_id FROM ${t.schema}.inbox WHERE consumer = $1 ORDER BY event_id`,
    [consumer],
  );
  return rows.map((row) => row.event_id);
}

const hour = 60 * 60 * 1000;
const day = 24 * hour;

describe('cleanupInbox()', () => {
  it('deletes only marks older than the default window of 7 days, in batches, and counts them', async () => {
    await t.pool.query(`DELETE FROM ${t.schema}.inbox`);
    await marks('c', 25, 8 * day, 'old');
    await marks('c', 3, 6 * day, 'recent');
    await marks('c', 2, 0, 'new');
    expect(await cleanupInbox(t.db, { schema: t.schema, batchSize: 4 })).toBe(25);
    expect(await remaining('c')).toEqual(['new-1', 'new-2', 'recent-1', 'recent-2', 'recent-3']);
    expect(await cleanupInbox(t.db, { schema: t.schema })).toBe(0);
  });

  it('honours retentionMs and the consumer filter', async () => {
    await t.pool.query(`DELETE FROM ${t.schema}.inbox`);
    await marks('a', 2, 2 * hour, 'old');
    await marks('a', 1, 30 * 60 * 1000, 'young');
    await marks('b', 2, 2 * hour, 'old');
    expect(await cleanupInbox(t.pool, { schema: t.schema, retentionMs: hour, consumer: 'a' })).toBe(2);
    expect(await remaining('a')).toEqual(['young-1']);
    expect(await remaining('b')).toEqual(['old-1', 'old-2']);
    expect(await cleanupInbox(t.pool, { schema: t.schema, retentionMs: hour })).toBe(2);
    expect(await remaining('b')).toEqual([]);
  });

  it('lets an event whose mark was cleaned up be applied again (so the window must outlast redelivery)', async () => {
    await t.pool.query(`DELETE FROM ${t.schema}.inbox`);
    const box = inbox({ consumer: 'late', schema: t.schema });
    await t.db.transaction((trx) => box.handle(trx, 'e', () => 1));
    await t.pool.query(`UPDATE ${t.schema}.inbox SET received_at = now() - interval '8 days'`);
    expect(await t.db.transaction((trx) => box.handle(trx, 'e', () => 2))).toEqual({ applied: false });
    expect(await cleanupInbox(t.db, { schema: t.schema })).toBe(1);
    expect(await t.db.transaction((trx) => box.handle(trx, 'e', () => 3))).toEqual({ applied: true, result: 3 });
  });

  it('stops between batches when its signal is aborted', async () => {
    await t.pool.query(`DELETE FROM ${t.schema}.inbox`);
    await marks('c', 10, 8 * day);
    const controller = new AbortController();
    controller.abort();
    expect(await cleanupInbox(t.db, { schema: t.schema, batchSize: 2, signal: controller.signal })).toBe(0);
    expect(await remaining('c')).toHaveLength(10);
  });

  it('rejects bad options and says to migrate when the tables are missing', async () => {
    await expect(cleanupInbox(t.db, { schema: t.schema, batchSize: 0 })).rejects.toBeInstanceOf(ConfigError);
    await expect(cleanupInbox(t.db, { schema: t.schema, retentionMs: -1 })).rejects.toBeInstanceOf(ConfigError);
    await expect(cleanupInbox(t.db, { schema: t.schema, retentionMs: 1.5 })).rejects.toThrow(/retentionMs/);
    await expect(cleanupInbox(t.db, { schema: 'Not Valid' })).rejects.toBeInstanceOf(ConfigError);
    await expect(cleanupInbox(t.db, { schema: 't_inbox_never_migrated' })).rejects.toBeInstanceOf(SchemaMissingError);
  });
});
