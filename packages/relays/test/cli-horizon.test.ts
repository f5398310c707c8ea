import { migrate } from '@tidings/outbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshOutbox, type TestOutbox } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';
import { runTidings } from '../../../test/support/cli.ts';

let outbox: TestOutbox;
beforeAll(async () => {
  outbox = await freshOutbox('cli_horizon', { partitions: 2 });
  await migrate(outbox.db, { schema: outbox.schema });
});
afterAll(() => outbox.close());

describe('the tidings command and the redelivery horizon', () => {
  it('refuses to retry a dead letter older than the horizon, saying what to do, and retries it with --beyond-horizon', async () => {
    await outbox.db.query(
      `INSERT INTO "${outbox.schema}".dead_letters (relay, partition, event_id, topic, payload, headers, event_created_at, errors)
       VALUES ('old-relay', 0, 'evt-old', 'orders.created', '1', '{}', now() - interval '8 days', '[]')`,
    );
    const flags = ['--relay', 'old-relay', '--database', services.postgres, '--schema', outbox.schema];
    const refused = await runTidings(['dead-letters', 'retry', ...flags]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/before the redelivery horizon of 7 days.*--beyond-horizon/s);
    const { rows } = await outbox.db.query<{ status: string }>(`SELECT status FROM "${outbox.schema}".dead_letters`);
    expect(rows).toEqual([{ status: 'dead' }]);

    const forced = await runTidings(['dead-letters', 'retry', ...flags, '--beyond-horizon']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout).toMatch(/queued 1 dead letters/);
  });
});
