import { partitionOf, pgDatabase, publish, status, type Database } from '@tidings/outbox';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';

const partitions = 4;
let outbox: TestOutbox;
let role: string;
let asRole: Database & { close(): Promise<void> };

/** A key whose events land in `partition`. */
function keyIn(partition: number): string {
  for (let i = 0; ; i++) if (partitionOf(`key-${i}`, '', partitions) === partition) return `key-${i}`;
}

beforeAll(async () => {
  outbox = await freshOutbox('holders', { partitions });
  // A role that may read the outbox and nothing more: no superuser, no pg_read_all_stats.
  role = `t_status_${randomBytes(4).toString('hex')}`;
  const s = `"${outbox.schema}"`;
  await outbox.db.query(`CREATE ROLE ${role} LOGIN PASSWORD 'status'`);
  await outbox.db.query(`GRANT USAGE ON SCHEMA ${s} TO ${role}`);
  await outbox.db.query(`GRANT SELECT ON ALL TABLES IN SCHEMA ${s} TO ${role}`);
  await outbox.db.query(`GRANT SELECT ON ALL SEQUENCES IN SCHEMA ${s} TO ${role}`);
  const url = new URL(services.postgres);
  url.username = role;
  url.password = 'status';
  asRole = pgDatabase(url.toString(), { max: 2 });
});
afterAll(async () => {
  await asRole.close();
  await outbox.db.query(`DROP OWNED BY ${role}`);
  await outbox.db.query(`DROP ROLE ${role}`);
  await outbox.close();
});

describe('status, read by a role that is not a superuser', () => {
  it('names the transaction holding a partition commit lock, the commits waiting for it, and counts held-back events toward stalled', async () => {
    const { schema } = outbox;
    const [held, free] = [1, 2];
    // A transaction that made the commit trigger fire early: it holds partition 1's lock until it ends.
    const holder = await outbox.pool.connect();
    const waiter = await outbox.pool.connect();
    let waiterCommit: Promise<unknown> | undefined;
    try {
      await holder.query(`SET application_name = 'stuck-committer'`);
      const { rows } = await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const holderPid = rows[0]!.pid;
      await holder.query('BEGIN');
      await holder.query('SET CONSTRAINTS ALL IMMEDIATE');
      await publish(holder, { topic: 'held', key: keyIn(held), payload: 'holder' }, { schema });
      // Another publisher into the same partition waits at COMMIT.
      await waiter.query('BEGIN');
      await publish(waiter, { topic: 'held', key: keyIn(held), payload: 'waiter' }, { schema });
      waiterCommit = waiter.query('COMMIT');
      waiterCommit.catch(() => {});
      // A publisher into another partition commits; the feeds must hold its event back.
      await inTransaction(outbox.pool, (c) => publish(c, { topic: 'held', key: keyIn(free), payload: 'behind' }, { schema }));

      // The start of another role's transaction is hidden: what status must do without.
      const hidden = await asRole.query<{ xact_start: Date | null }>('SELECT xact_start FROM pg_stat_activity WHERE pid = $1', [holderPid]);
      expect(hidden.rows).toEqual([{ xact_start: null }]);

      const report = await waitUntil('the waiter to wait on the lock', async () => {
        const r = await status(asRole, { schema, stalledAfterSeconds: 0 });
        return r.feeds.holders[0]?.waiting === 1 && r;
      });
      expect(report.feeds.holders).toEqual([
        {
          partition: held,
          pid: holderPid,
          applicationName: 'stuck-committer',
          preparedTransaction: null,
          preparedSeconds: null,
          waiting: 1,
          waitedSeconds: expect.any(Number),
        },
      ]);
      expect(report.feeds.events).toBe(1);
      expect(report.feeds.stalled).toBe(true);
      // Below the threshold, held back is not stalled.
      expect((await status(asRole, { schema, stalledAfterSeconds: 3600 })).feeds).toMatchObject({ events: 1, stalled: false });
    } finally {
      await holder.query('COMMIT').catch(() => {});
      await waiterCommit;
      holder.release();
      waiter.release();
    }
    expect((await status(asRole, { schema })).feeds).toEqual({ events: 0, seconds: 0, stalled: false, holders: [] });
  });
});
