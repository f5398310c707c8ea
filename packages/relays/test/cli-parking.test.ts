import { createRelay, failed, listParkedKeys, publish, status, unavailable, type Relay } from '@tidings/outbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';
import { createSink, received, tableTransport } from '../../../test/support/table-transport.ts';
import { runTidings } from '../../../test/support/cli.ts';

let outbox: TestOutbox;
let relay: Relay;
let refusing = true;
let down = false;
beforeAll(async () => {
  outbox = await freshOutbox('cli_parking', { partitions: 2 });
  await createSink(outbox.pool, outbox.schema);
  relay = createRelay({
    name: 'cli-parking',
    database: outbox.db,
    schema: outbox.schema,
    transport: tableTransport(outbox.pool, outbox.schema, {
      fault: (e) =>
        refusing && e.payload === 'bad'
          ? failed(new Error('rejected by the receiver'))
          : down
            ? unavailable(new Error('connection refused by the test receiver'))
            : undefined,
    }),
    pollIntervalMs: 100,
    heartbeatIntervalMs: 200,
    leaseTtlMs: 2_000,
  });
  await relay.start();
});
afterAll(async () => {
  await relay?.stop();
  await outbox?.close();
});

describe('tidings status and dead-letters: outages and parked keys', () => {
  it('tidings status shows a destination the relay waits for, and since when', async () => {
    const pg = ['--database', services.postgres, '--schema', outbox.schema];
    down = true;
    await inTransaction(outbox.pool, (c) => publish(c, [{ topic: 'cli', key: 'order-0', payload: 'while down' }], { schema: outbox.schema }));
    const report = async () => (await status(outbox.db, { schema: outbox.schema })).relays.find((r) => r.relay === 'cli-parking')!;
    await waitUntil('status sees the outage', async () => (await report()).unavailableSince !== null);
    expect((await report()).partitions.filter((p) => p.unavailable).map((p) => p.unavailable!.error)).toEqual(['connection refused by the test receiver']);
    const text = await runTidings(['status', ...pg]);
    expect(text.stdout).toMatch(/destination UNAVAILABLE for [\d.]+ s \(1 partitions waiting; nothing is counted against the events\): connection refused by the test receiver/);
    down = false;
    await waitUntil('status sees the destination back', async () => (await report()).unavailableSince === null);
    await waitUntil('the event arrived', async () => (await received(outbox.pool, outbox.schema)).some((r) => r.payload === 'while down'));
    await outbox.pool.query(`TRUNCATE "${outbox.schema}".received`);
  });

  it('show the parked key and the events waiting behind its dead letter, and retry --wait delivers them in order', async () => {
    const pg = ['--database', services.postgres, '--schema', outbox.schema];
    await inTransaction(outbox.pool, (c) =>
      publish(c, ['good', 'bad', 'next', 'last'].map((payload) => ({ topic: 'cli', key: 'order-1', payload })), { schema: outbox.schema }),
    );
    await waitUntil('the key is parked', async () => (await listParkedKeys(outbox.db, { schema: outbox.schema }))[0]?.parkedEvents === 2);

    const text = await runTidings(['status', ...pg]);
    expect(text.stdout).toMatch(/relay cli-parking: .*1 dead letters; 1 keys parked behind them \(2 events waiting\)/);
    const json = JSON.parse((await runTidings(['status', ...pg, '--json'])).stdout) as { relays: Array<{ relay: string; parkedKeys: number; parkedEvents: number }> };
    expect(json.relays.find((r) => r.relay === 'cli-parking')).toMatchObject({ parkedKeys: 1, parkedEvents: 2 });
    const list = await runTidings(['dead-letters', 'list', ...pg]);
    expect(list.stdout).toMatch(/\[dead\] key "order-1" parked with 2 events behind it; after 1 attempts: rejected by the receiver/);

    refusing = false;
    const retried = await runTidings(['dead-letters', 'retry', '--wait', ...pg]);
    expect(retried.code, retried.stderr + retried.stdout).toBe(0);
    expect(retried.stdout, retried.stdout).toMatch(/1 delivered, 0 failed again/);
    await waitUntil('the parked events were delivered', async () => (await received(outbox.pool, outbox.schema)).length === 4);
    expect((await received(outbox.pool, outbox.schema)).map((r) => r.payload)).toEqual(['good', 'bad', 'next', 'last']);
    await waitUntil('nothing parked', async () => (await listParkedKeys(outbox.db, { schema: outbox.schema })).length === 0);
    expect((await runTidings(['status', ...pg])).stdout).toMatch(/0 dead letters; 0 keys parked behind them \(0 events waiting\)/);
  });
});
