import { inbox, migrateInbox } from '@tidings/inbox';
import {
  BeyondHorizonError,
  createRelay,
  listDeadLetters,
  publish,
  replay,
  retryDeadLetters,
} from '@tidings/outbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { collectingTransport } from '../../../test/support/collecting-transport.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';

const day = 24 * 3_600_000;
let outbox: TestOutbox;

beforeAll(async () => {
  outbox = await freshOutbox('horizon', { partitions: 2 });
});
afterAll(async () => {
  await outbox?.close();
});


/** Makes the outbox look as if its events had been written `days` ago. */
async function age(table: 'events' | 'dead_letters', days: number): Promise<void> {
  const column = table === 'events' ? 'created_at' : 'event_created_at';
  await outbox.db.query(`UPDATE "${outbox.schema}".${table} SET ${column} = ${column} - $1::int * interval '1 day'`, [days]);
}

describe('the redelivery horizon', () => {
  it('refuses a replay that reaches events older than the horizon, before moving any cursor, unless asked to go beyond it', async () => {
    const schema = outbox.schema;
    const transport = collectingTransport();
    const relay = createRelay({ name: 'replayed', database: outbox.db, schema, transport, pollIntervalMs: 20, leaseTtlMs: 2_000 });
    await relay.start();
    try {
      await inTransaction(outbox.pool, (client) => publish(client, [1, 2, 3].map((n) => ({ topic: 'h.replay', key: `k${n}`, payload: n })), { schema }));
      await waitUntil('three events delivered', async () => transport.got.length === 3);
    } finally {
      await relay.stop();
    }
    await age('events', 8);
    const cursors = async () => (await outbox.db.query(`SELECT partition, cursor_id::text FROM "${schema}".relay_partitions WHERE relay = 'replayed' ORDER BY partition`)).rows;
    const before = await cursors();

    const error = await replay(outbox.db, { schema, relay: 'replayed', from: new Date(Date.now() - 9 * day) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BeyondHorizonError);
    expect((error as Error).message).toMatch(/before the redelivery horizon of 7 days.*beyondHorizon: true/s);
    expect(await cursors()).toEqual(before);
    // The same replay within a longer horizon (set on both sides), or explicitly beyond it, goes ahead.
    expect(await replay(outbox.db, { schema, relay: 'replayed', from: new Date(Date.now() - 9 * day), horizonMs: 10 * day })).toBeGreaterThan(0);
    // Back at the head of the log, as after the first replay's redelivery.
    await outbox.db.query(
      `UPDATE "${schema}".relay_partitions rp SET (cursor_seq, cursor_id) = (c.seq, c.id)
       FROM (SELECT partition, max(seq) AS seq, max(last_id) AS id FROM "${schema}".commits GROUP BY partition) c
       WHERE rp.relay = 'replayed' AND rp.partition = c.partition`,
    );
    expect(await replay(outbox.db, { schema, relay: 'replayed', from: new Date(Date.now() - 9 * day), beyondHorizon: true })).toBeGreaterThan(0);
  });

  it('refuses to retry dead letters of events older than the horizon, queues none of them, and retries them when told to', async () => {
    const schema = outbox.schema;
    const insert = (eventId: string, ageDays: number) =>
      outbox.db.query(
        `INSERT INTO "${schema}".dead_letters (relay, partition, event_id, topic, payload, headers, event_created_at, errors)
         VALUES ('dl', 0, $1, 'h.dead', '1', '{}', now() - $2::int * interval '1 day', '[]')`,
        [eventId, ageDays],
      );
    await insert('old-1', 8);
    await insert('new-1', 1);
    const error = await retryDeadLetters(outbox.db, { schema, relay: 'dl' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BeyondHorizonError);
    expect((await listDeadLetters(outbox.db, { schema, relay: 'dl' })).map((l) => l.status)).toEqual(['dead', 'dead']);
    const newer = (await listDeadLetters(outbox.db, { schema, relay: 'dl' })).filter((l) => l.eventId === 'new-1').map((l) => l.id);
    expect(await retryDeadLetters(outbox.db, { schema, relay: 'dl', ids: newer })).toBe(1);
    expect(await retryDeadLetters(outbox.db, { schema, relay: 'dl', beyondHorizon: true })).toBe(1);
    await expect(retryDeadLetters(outbox.db, { schema, relay: 'dl', horizonMs: 0 })).rejects.toThrow(/horizonMs/);
  });

  it('is the inbox retention too: an event written before it is applied and flagged, or refused when the inbox is told to', async () => {
    const schema = outbox.schema;
    await migrateInbox(outbox.db, { schema });
    const old = { eventId: 'evt-old', createdAt: new Date(Date.now() - 8 * day) };
    const fresh = { eventId: 'evt-fresh', createdAt: new Date().toISOString() };
    const flagging = inbox({ consumer: 'flagging', schema });
    expect(await outbox.db.transaction((trx) => flagging.handle(trx, old, () => 'ok'))).toEqual({ applied: true, result: 'ok', beyondHorizon: true });
    expect(await outbox.db.transaction((trx) => flagging.handle(trx, fresh, () => 'ok'))).toEqual({ applied: true, result: 'ok' });
    const strict = inbox({ consumer: 'strict', schema, beyondHorizon: 'refuse' });
    await expect(outbox.db.transaction((trx) => strict.handle(trx, old, () => 'ok'))).rejects.toBeInstanceOf(BeyondHorizonError);
    const marks = await outbox.db.query(`SELECT 1 FROM "${schema}".inbox WHERE consumer = 'strict'`);
    expect(marks.rowCount).toBe(0);
    const longer = inbox({ consumer: 'longer', schema, beyondHorizon: 'refuse', horizonMs: 30 * day });
    expect(await outbox.db.transaction((trx) => longer.handle(trx, old, () => 'ok'))).toEqual({ applied: true, result: 'ok' });
  });
});
