import { createRelay, migrate, publish, retry, type Relay, type Transport } from '@tidings/outbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';
import { createSink, received, tableTransport } from '../../../test/support/table-transport.ts';
import { runTidings } from '../../../test/support/cli.ts';

let outbox: TestOutbox;
let flags: string[];
beforeAll(async () => {
  outbox = await freshOutbox('cli_retention', { partitions: 2 });
  await migrate(outbox.db, { schema: outbox.schema });
  await createSink(outbox.pool, outbox.schema);
  flags = ['--database', services.postgres, '--schema', outbox.schema];
});
afterAll(() => outbox.close());

function stuckTransport(): Transport {
  return {
    name: 'stuck',
    capabilities: { orderedPerKey: true, persistent: true },
    async send(batch) {
      return batch.map(() => retry(new Error('the receiver is down for an hour')));
    },
    async close() {},
  };
}

function relayNamed(name: string, topic: string): Relay {
  return createRelay({ name, database: outbox.db, schema: outbox.schema, transport: tableTransport(outbox.pool, outbox.schema), topics: [topic], pollIntervalMs: 50 });
}

describe('tidings cleanup and tidings relay drop', () => {
  it('cleanup deletes what every relay passed; a relay that stopped holds it back until relay drop forgets it, which refuses while it runs', async () => {
    const topic = 'cli.retention';
    await inTransaction(outbox.pool, (c) => publish(c, [1, 2, 3].map((n) => ({ topic, key: `k${n}`, payload: n })), { schema: outbox.schema }));
    await outbox.db.query(`UPDATE "${outbox.schema}".events SET created_at = now() - interval '8 days'`);
    // "stale" is stuck at the first event of each partition: its transport asks for a retry an hour
    // later every time, so its cursor never passes an event while it runs, and after it stops.
    const stale = createRelay({
      name: 'stale',
      database: outbox.db,
      schema: outbox.schema,
      transport: stuckTransport(),
      topics: [topic],
      onFailure: 'block',
      retry: { minDelayMs: 3_600_000, maxDelayMs: 3_600_000 },
    });
    await stale.start();
    const live = relayNamed('live', topic);
    await live.start();
    await waitUntil('the live relay delivered', async () => (await received(outbox.pool, outbox.schema)).length === 3);

    const held = await runTidings(['cleanup', ...flags]);
    expect(held.code, held.stderr).toBe(0);
    expect(held.stdout).toBe('deleted 0 events\n');

    const running = await runTidings(['relay', 'drop', 'stale', ...flags]);
    expect(running.code).toBe(2);
    expect(running.stderr).toMatch(/relay "stale" is running \(workers holding leases: .+\); stop its workers first/);
    await stale.stop({ graceMs: 500 });
    const dropped = await runTidings(['relay', 'drop', 'stale', ...flags]);
    expect(dropped.code, dropped.stderr).toBe(0);
    expect(dropped.stdout).toMatch(/^dropped relay stale: .*retention no longer waits for it/);

    const young = await runTidings(['cleanup', '--retention-days', '30', ...flags]);
    expect(young.stdout).toBe('deleted 0 events\n');
    const done = await runTidings(['cleanup', '--retention-days', '7', '--batch-size', '1', ...flags]);
    expect(done.code, done.stderr).toBe(0);
    expect(done.stdout).toBe('deleted 3 events\n');
    await live.stop({ graceMs: 500 });
  });

  it('refuses wrong command lines with exit code 2 and what to pass', async () => {
    expect(await runTidings(['relay', 'drop', ...flags])).toMatchObject({ code: 2, stderr: expect.stringMatching(/takes one relay name/) });
    expect(await runTidings(['relay', 'drop', 'livee', ...flags])).toMatchObject({ code: 2, stderr: expect.stringMatching(/no relay named "livee".*did you mean "live"/) });
    expect(await runTidings(['cleanup', '--retention-days=-1', ...flags])).toMatchObject({ code: 2, stderr: expect.stringMatching(/--retention-days takes a number of at least 0/) });
    expect(await runTidings(['cleanup', '--batch-size', '0', ...flags])).toMatchObject({ code: 2, stderr: expect.stringMatching(/--batch-size takes a whole number/) });
    expect(await runTidings(['cleanup', 'now', ...flags])).toMatchObject({ code: 2, stderr: expect.stringMatching(/takes no arguments/) });
  });
});
