import { ConfigError, migrateInbox } from '@tidings/inbox';
import { applyMigrations } from '@tidings/outbox/internal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshSchema, type TestDb } from './support.ts';

let t: TestDb;

beforeAll(async () => {
  t = await freshSchema({ migrate: false });
});
afterAll(async () => {
  await t?.drop();
});

describe('migrateInbox()', () => {
  it('creates the tables once; running it again, even concurrently, is a no-op', async () => {
    const runs = await Promise.all([migrateInbox(t.db, { schema: t.schema }), migrateInbox(t.db, { schema: t.schema })]);
    expect(runs.flatMap((run) => run.applied)).toEqual(['0001_inbox.sql']);
    expect(await migrateInbox(t.db, { schema: t.schema })).toEqual({ component: 'inbox', applied: [] });

    const { rows: versions } = await t.pool.query(`SELECT component, version, name FROM ${t.schema}.migrations`);
    expect(versions).toEqual([{ component: 'inbox', version: 1, name: '0001_inbox.sql' }]);
    const { rows: tables } = await t.pool.query(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
      [t.schema],
    );
    expect(tables.map((row) => row.table_name)).toEqual(['checkpoints', 'effects', 'inbox', 'migrations']);
    const { rows: indexes } = await t.pool.query(`SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'inbox'`, [
      t.schema,
    ]);
    expect(indexes.map((row) => row.indexname).sort()).toEqual(['inbox_pkey', 'inbox_received_at']);
  });

  it('shares a schema with the outbox', async () => {
    const outbox = await applyMigrations(t.db, t.schema, {
      component: 'outbox',
      folder: new URL('../../outbox/migrations/', import.meta.url),
      values: { partitions: 4 },
    });
    expect(outbox.applied).toContain('0001_outbox.sql');
    expect(await migrateInbox(t.db, { schema: t.schema })).toEqual({ component: 'inbox', applied: [] });
    const { rows } = await t.pool.query(`SELECT DISTINCT component FROM ${t.schema}.migrations ORDER BY component`);
    expect(rows.map((row) => row.component)).toEqual(['inbox', 'outbox']);
  });

  it('rejects a schema name that is not a plain identifier', async () => {
    await expect(migrateInbox(t.db, { schema: 'x; drop table y' })).rejects.toBeInstanceOf(ConfigError);
  });
});
