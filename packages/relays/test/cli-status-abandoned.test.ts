import { cleanup, publish } from '@tidings/outbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';
import { runTidings as tidings } from '../../../test/support/cli.ts';

let outbox: TestOutbox;
let pg: string[];
beforeAll(async () => {
  outbox = await freshOutbox('cli_abandoned', { partitions: 2 });
  pg = ['--database', services.postgres, '--schema', outbox.schema];
});
afterAll(() => outbox?.close());

describe('tidings status: a relay that holds retention back', () => {
  it('names an abandoned relay and the command that drops it; once dropped, retention deletes what it held', async () => {
    await inTransaction(outbox.pool, (c) =>
      publish(c, ['a', 'b', 'c'].map((payload) => ({ topic: 'orders.created', key: payload, payload })), { schema: outbox.schema }),
    );
    const s = `"${outbox.schema}"`;
    await outbox.db.query(
      `INSERT INTO ${s}.relay_partitions (relay, partition, updated_at)
       SELECT 'old-endpoint', p, now() - interval '50 hours' FROM generate_series(0, 1) p`,
    );
    await outbox.db.query(`UPDATE ${s}.events SET created_at = now() - interval '3 days'`);

    const text = await tidings(['status', ...pg]);
    expect(text.code, text.stderr).toBe(1); // behind with no worker: stalled
    expect(text.stdout).toMatch(/relay old-endpoint: STALLED; 3 events behind/);
    expect(text.stdout).toMatch(/ABANDONED: no worker and no progress for 50\.\d h; retention keeps every event after its cursor\. If it will not run again: tidings relay drop old-endpoint/);
    const json = JSON.parse((await tidings(['status', ...pg, '--json'])).stdout) as { relays: Array<{ relay: string; abandoned: boolean; stalled: boolean }> };
    expect(json.relays).toEqual([expect.objectContaining({ relay: 'old-endpoint', abandoned: true, stalled: true })]);
    // The shape the README documents for monitoring, no more and no less.
    const whole = json as unknown as { feeds: Record<string, unknown>; relays: Array<Record<string, unknown> & { partitions: Record<string, unknown>[] }> };
    expect(Object.keys(whole).sort()).toEqual(['feeds', 'relays']);
    expect(Object.keys(whole.feeds).sort()).toEqual(['events', 'holders', 'seconds', 'stalled']);
    expect(Object.keys(whole.relays[0]!).sort()).toEqual(
      ['abandoned', 'deadLetters', 'lagEvents', 'lagSeconds', 'parkedEvents', 'parkedKeys', 'partitions', 'relay', 'stalled', 'unavailableSince', 'workers'],
    );
    expect(Object.keys(whole.relays[0]!.partitions[0]!).sort()).toEqual(['cursor', 'lagEvents', 'lagSeconds', 'leaseUntil', 'movedAt', 'owner', 'partition', 'unavailable']);

    const patient = await tidings(['status', ...pg, '--abandoned-after', String(3 * 86_400)]);
    expect(patient.stdout).toMatch(/relay old-endpoint: STALLED/);
    expect(patient.stdout).not.toMatch(/ABANDONED/);
    const wrong = await tidings(['status', ...pg, '--abandoned-after', 'soon']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/--abandoned-after takes a whole number of at least 1, got "soon"/);

    expect((await cleanup(outbox.db, { schema: outbox.schema, retentionMs: 86_400_000 })).events).toBe(0);
    const dropped = await tidings(['relay', 'drop', 'old-endpoint', ...pg]);
    expect(dropped.code, dropped.stderr).toBe(0);
    expect((await cleanup(outbox.db, { schema: outbox.schema, retentionMs: 86_400_000 })).events).toBe(3);
    expect((await tidings(['status', ...pg])).stdout).toMatch(/no relays have run yet/);
  });
});
