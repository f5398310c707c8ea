import {
  adoptCluster,
  ClusterChangedError,
  createRelay,
  CursorAheadError,
  encodePosition,
  inspectCluster,
  InvalidCursorError,
  moveCursors,
  publish,
  readFeed,
  type Relay,
} from '@tidings/outbox';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inCommitOrder, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { createSink, received, tableTransport } from '../../../test/support/table-transport.ts';

let outbox: TestOutbox;
const relays: Relay[] = [];

beforeAll(async () => {
  outbox = await freshOutbox('cluster', { partitions: 2 });
  await createSink(outbox.pool, outbox.schema);
});
afterEach(async () => {
  await Promise.all(relays.splice(0).map((relay) => relay.stop({ graceMs: 1000 })));
  await outbox.pool.query(`TRUNCATE "${outbox.schema}".received`);
});
afterAll(async () => {
  await outbox.close();
});

function relayFor(name: string, topic: string): Relay {
  const relay = createRelay({
    name,
    database: outbox.db,
    schema: outbox.schema,
    transport: tableTransport(outbox.pool, outbox.schema),
    topics: [topic],
    pollIntervalMs: 50,
  });
  relays.push(relay);
  return relay;
}

const publishMany = (topic: string, payloads: number[]) =>
  inTransaction(outbox.pool, (client) => publish(client, payloads.map((payload) => ({ topic, key: `k${payload % 3}`, payload })), { schema: outbox.schema }));

const arrived = async (topic: string) => (await received(outbox.pool, outbox.schema)).filter((row) => row.topic === topic).map((row) => row.payload);

describe('a restored or moved cluster', () => {
  it('is refused when the recorded identity changed, and accepted once adopted', async () => {
    const s = `"${outbox.schema}"`;
    expect((await inspectCluster(outbox.db, { schema: outbox.schema })).changed).toBe(false);
    // What a dump restored elsewhere looks like: the settings row names another events table.
    await outbox.db.query(`UPDATE ${s}.settings SET events_oid = 1`);
    const relay = relayFor('identity', 'cluster.identity');
    const refused = await relay.start().catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ClusterChangedError);
    expect((refused as Error).message).toMatch(/tidings cluster adopt/);
    const adopted = await adoptCluster(outbox.db, { schema: outbox.schema });
    expect(adopted.changed).toBe(false);
    await publishMany('cluster.identity', [1]);
    const again = relayFor('identity', 'cluster.identity');
    await again.start();
    await waitUntil('the event delivered', async () => (await arrived('cluster.identity')).length === 1);
  });

  it('refuses a cursor beyond the log instead of skipping what comes, and moves it back by time', async () => {
    const topic = 'cluster.ahead';
    const first = relayFor('ahead', topic);
    await first.start();
    await publishMany(topic, [1]);
    await waitUntil('the first event delivered', async () => (await arrived(topic)).length === 1);
    await first.stop();
    // A cursor of another cluster: 5 000 000 commits ahead of this log.
    await outbox.db.query(`UPDATE "${outbox.schema}".relay_partitions SET cursor_seq = cursor_seq + 5000000 WHERE relay = 'ahead'`);
    const since = new Date();
    await publishMany(topic, [2, 3, 4, 5, 6]);
    const refused = await relayFor('ahead', topic).start().catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(CursorAheadError);
    expect((refused as CursorAheadError).where).toEqual(['ahead/0', 'ahead/1']);

    expect(await moveCursors(outbox.db, { schema: outbox.schema, relay: 'ahead', to: since })).toBe(2);
    await relayFor('ahead', topic).start();
    await waitUntil('the five events delivered', async () => (await arrived(topic)).length === 6);
    expect((await arrived(topic)).slice(1).sort()).toEqual([2, 3, 4, 5, 6]);
  });

  it('moves cursors after a given event, forwards as well as back', async () => {
    const topic = 'cluster.after';
    const events = await inCommitOrder(outbox.db, outbox.schema, [...(await publishMany(topic, [1, 2])), ...(await publishMany(topic, [3, 4]))]);
    const relay = relayFor('after', topic);
    await relay.start();
    await relay.stop();
    const lastOfFirst = events.find((e) => e.payload === 2)!;
    await moveCursors(outbox.db, { schema: outbox.schema, relay: 'after', to: { afterEvent: lastOfFirst.eventId } });
    await outbox.pool.query(`TRUNCATE "${outbox.schema}".received`);
    await relayFor('after', topic).start();
    await waitUntil('the second transaction delivered', async () => (await arrived(topic)).length === 2);
    expect((await arrived(topic)).sort()).toEqual([3, 4]);
    await expect(moveCursors(outbox.db, { schema: outbox.schema, relay: 'after', to: { afterEvent: 'nope' } })).rejects.toThrow(/no event nope/);
  });

  it('refuses to run when the commit counter is behind the log, and adopt moves it past', async () => {
    const s = `"${outbox.schema}"`;
    await publishMany('cluster.counter', [1]);
    // A cut-over that copied the tables but not the sequence.
    await outbox.db.query(`SELECT setval('${s}.commit_seq', 1)`);
    const refused = await relayFor('counter', 'cluster.counter').start().catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(CursorAheadError);
    expect((refused as CursorAheadError).where).toContain('commit counter');
    const report = await adoptCluster(outbox.db, { schema: outbox.schema });
    expect(report.ahead).toEqual([]);
    expect(BigInt(report.lastDrawn)).toBeGreaterThanOrEqual(BigInt(report.highestCommit));
  });

  it('a feed refuses a cursor beyond the end of the log', async () => {
    const far = { seq: '900000000', id: '0' };
    const refused = await readFeed(outbox.db, outbox.schema, { after: far, limit: 10 }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(InvalidCursorError);
    expect((refused as InvalidCursorError).reason).toBe('ahead');
    expect((refused as Error).message).toContain(encodePosition(far));
  });
});
