import { createRelay, inspectCluster, type Relay } from '@tidings/outbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectingTransport } from '../../../test/support/collecting-transport.ts';
import { freshOutbox, type TestOutbox } from '../../../test/support/db.ts';
import { explainingStatements, jitAboveCost } from '../../../test/support/explaining-database.ts';

let outbox: TestOutbox;
let jitLimit: number;

beforeAll(async () => {
  outbox = await freshOutbox('statement_costs', { partitions: 16 });
  // The cursors of 1,000 other relays (as many webhook endpoints make), so the statements that
  // look at every cursor are planned over a table of realistic size.
  await outbox.db.query(
    `INSERT INTO "${outbox.schema}".relay_partitions (relay, partition, cursor_seq)
     SELECT 'other-' || r, p, 0 FROM generate_series(1, 1000) r, generate_series(0, 15) p`,
  );
  jitLimit = await jitAboveCost(outbox.db);
});
afterAll(async () => {
  await outbox?.close();
});

describe('statements run once per relay are planned below jit_above_cost', () => {
  it.each(['beginning', 'now'] as const)(
    'each statement of a relay start from %s, its registration and the cluster check among them, costs less than jit_above_cost',
    async (startFrom) => {
      const explaining = explainingStatements(outbox.db);
      const relay: Relay = createRelay({ name: `costed-${startFrom}`, database: explaining.db, schema: outbox.schema, transport: collectingTransport(), startFrom });
      await relay.start();
      await relay.stop({ graceMs: 0 });
      const registration = explaining.statements.filter((s) => s.text.includes('relay_partitions (relay, partition, cursor_seq)'));
      const clusterCheck = explaining.statements.filter((s) => s.text.includes('AS recorded_system'));
      expect({ registration: registration.length, clusterCheck: clusterCheck.length }, 'statements seen').toEqual({ registration: 1, clusterCheck: 1 });
      const over = explaining.statements.filter((s) => s.cost >= jitLimit);
      expect(over, `statements costed at or above jit_above_cost ${jitLimit}`).toEqual([]);
    },
  );

  it('inspectCluster costs less than jit_above_cost', async () => {
    const explaining = explainingStatements(outbox.db);
    await inspectCluster(explaining.db, { schema: outbox.schema });
    expect(explaining.statements.length).toBeGreaterThan(0);
    expect(explaining.statements.filter((s) => s.cost >= jitLimit)).toEqual([]);
  });
});
