import { migrate, partitionOf, pgDatabase, publish, status, type Database } from '@tidings/outbox';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { startPrivatePostgres, type PrivatePostgres } from '../../../test/support/private-postgres.ts';

// Two-phase commit needs max_prepared_transactions above 0, which only a restart sets: this test
// runs its own server of the machine's PostgreSQL installation.
const partitions = 4;
const schema = 'prepared';
let server: PrivatePostgres;
let admin: pg.Pool;
let asRole: Database & { close(): Promise<void> };

function keyIn(partition: number): string {
  for (let i = 0; ; i++) if (partitionOf(`key-${i}`, '', partitions) === partition) return `key-${i}`;
}

beforeAll(async () => {
  server = await startPrivatePostgres({ max_prepared_transactions: '10' });
  admin = new pg.Pool({ connectionString: server.url, max: 4 });
  const db = pgDatabase(server.url, { max: 2 });
  await migrate(db, { schema, partitions });
  await db.close();
  // A role that may read the outbox and nothing more: no superuser, no pg_read_all_stats.
  await admin.query(`CREATE ROLE watcher LOGIN PASSWORD 'status'`);
  await admin.query(`GRANT USAGE ON SCHEMA ${schema} TO watcher`);
  await admin.query(`GRANT SELECT ON ALL TABLES IN SCHEMA ${schema} TO watcher`);
  await admin.query(`GRANT SELECT ON ALL SEQUENCES IN SCHEMA ${schema} TO watcher`);
  const url = new URL(server.url);
  url.username = 'watcher';
  url.password = 'status';
  asRole = pgDatabase(url.toString(), { max: 2 });
}, 120_000);
afterAll(async () => {
  await asRole?.close();
  await admin?.end();
  await server?.stop();
});

describe('status and a prepared transaction that published', () => {
  it('names the prepared transaction holding a partition commit lock, the commits waiting for it, and counts held-back events toward stalled', async () => {
    const [held, free] = [1, 2];
    const preparer = await admin.connect();
    const waiter = await admin.connect();
    let waiterCommit: Promise<unknown> | undefined;
    try {
      // Deferred constraint triggers fire at PREPARE TRANSACTION: the prepared transaction keeps
      // partition 1's commit lock until COMMIT PREPARED. (NOTIFY cannot be prepared.)
      await preparer.query('BEGIN');
      await publish(preparer, { topic: 'held', key: keyIn(held), payload: 'prepared' }, { schema, notify: false });
      await preparer.query(`PREPARE TRANSACTION 'order-42'`);
      await waiter.query('BEGIN');
      await publish(waiter, { topic: 'held', key: keyIn(held), payload: 'waiter' }, { schema });
      waiterCommit = waiter.query('COMMIT');
      waiterCommit.catch(() => {});
      const other = await admin.connect();
      try {
        await other.query('BEGIN');
        await publish(other, { topic: 'held', key: keyIn(free), payload: 'behind' }, { schema });
        await other.query('COMMIT');
      } finally {
        other.release();
      }

      const report = await waitUntil('the waiter to wait on the lock', async () => {
        const r = await status(asRole, { schema, stalledAfterSeconds: 0 });
        return r.feeds.holders[0]?.waiting === 1 && r;
      });
      expect(report.feeds.holders).toEqual([
        {
          partition: held,
          pid: null,
          applicationName: null,
          preparedTransaction: 'order-42',
          preparedSeconds: expect.any(Number),
          waiting: 1,
          waitedSeconds: expect.any(Number),
        },
      ]);
      expect(report.feeds.events).toBe(1);
      expect(report.feeds.stalled).toBe(true);
    } finally {
      await admin.query(`COMMIT PREPARED 'order-42'`).catch(() => {});
      await waiterCommit;
      preparer.release();
      waiter.release();
    }
    expect((await status(asRole, { schema })).feeds).toEqual({ events: 0, seconds: 0, stalled: false, holders: [] });
  });
});
