import { createRelay, migrate, publish, type Relay } from '@tidings/outbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inCommitOrder, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';
import { createSink, received, tableTransport } from '../../../test/support/table-transport.ts';
import { runTidings } from '../../../test/support/cli.ts';

let outbox: TestOutbox;
let flags: string[];
beforeAll(async () => {
  outbox = await freshOutbox('cli_cluster', { partitions: 2 });
  await migrate(outbox.db, { schema: outbox.schema });
  await createSink(outbox.pool, outbox.schema);
  flags = ['--database', services.postgres, '--schema', outbox.schema];
});
afterAll(() => outbox.close());

async function runRelayOnce(topic: string, count: number): Promise<void> {
  const relay: Relay = createRelay({
    name: 'moved',
    database: outbox.db,
    schema: outbox.schema,
    transport: tableTransport(outbox.pool, outbox.schema),
    topics: [topic],
    pollIntervalMs: 50,
  });
  await relay.start();
  try {
    await waitUntil(`${count} events delivered`, async () => (await received(outbox.pool, outbox.schema)).filter((r) => r.topic === topic).length >= count);
  } finally {
    await relay.stop({ graceMs: 1_000 });
  }
}

describe('tidings cluster', () => {
  it('check exits 0 on the recorded cluster and 1 after a restore elsewhere, naming what changed; adopt records the new one', async () => {
    const fine = await runTidings(['cluster', 'check', ...flags]);
    expect(fine.code, fine.stderr).toBe(0);
    expect(fine.stdout).toMatch(/^recorded: events table \d+/m);
    expect(fine.stdout).not.toMatch(/changed/);

    // What a dump restored elsewhere looks like: the settings row names another events table.
    await outbox.db.query(`UPDATE "${outbox.schema}".settings SET events_oid = 1`);
    const changed = await runTidings(['cluster', 'check', ...flags]);
    expect(changed.code).toBe(1);
    expect(changed.stdout).toMatch(/^recorded: events table 1,/m);
    expect(changed.stdout).toMatch(/^current: .*<- changed$/m);

    const adopted = await runTidings(['cluster', 'adopt', ...flags]);
    expect(adopted.code, adopted.stderr).toBe(0);
    expect((await runTidings(['cluster', 'check', ...flags])).code).toBe(0);
  });

  it('check names cursors beyond the log; move-cursors --after-event puts them back, and the relay delivers what came after', async () => {
    const topic = 'cli.cluster.moved';
    const published = await inTransaction(outbox.pool, (c) => publish(c, [{ topic, payload: 1 }], { schema: outbox.schema }));
    await runRelayOnce(topic, 1);
    await outbox.db.query(`UPDATE "${outbox.schema}".relay_partitions SET cursor_seq = cursor_seq + 5000000 WHERE relay = 'moved'`);
    const ahead = await runTidings(['cluster', 'check', ...flags]);
    expect(ahead.code).toBe(1);
    expect(ahead.stdout).toMatch(/^beyond the log: moved\/0, moved\/1$/m);

    await inTransaction(outbox.pool, (c) => publish(c, [{ topic, payload: 2 }], { schema: outbox.schema }));
    const [first] = await inCommitOrder(outbox.db, outbox.schema, published);
    const moved = await runTidings(['cluster', 'move-cursors', '--relay', 'moved', '--after-event', first!.eventId, ...flags]);
    expect(moved.code, moved.stderr).toBe(0);
    expect(moved.stdout).toBe('moved 2 partition cursors of relay moved\n');
    expect((await runTidings(['cluster', 'check', ...flags])).code).toBe(0);
    await runRelayOnce(topic, 2);
    expect((await received(outbox.pool, outbox.schema)).filter((r) => r.topic === topic).map((r) => r.payload)).toEqual([1, 2]);
  });

  it('refuses a wrong command line with exit code 2 and what to pass', async () => {
    const none = await runTidings(['cluster', 'move-cursors', ...flags]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/needs --relay NAME/);
    const both = await runTidings(['cluster', 'move-cursors', '--relay', 'moved', '--to-time', '2026-01-01T00:00:00Z', '--after-event', 'x', ...flags]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/exactly one of --to-time TIME and --after-event ID/);
    const badTime = await runTidings(['cluster', 'move-cursors', '--relay', 'moved', '--to-time', 'yesterday', ...flags]);
    expect(badTime.code).toBe(2);
    expect(badTime.stderr).toMatch(/not an ISO time/);
    const unknown = await runTidings(['cluster', 'explode', ...flags]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/needs check, move-cursors or adopt/);
  });
});
