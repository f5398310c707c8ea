import { applyMigrations, migrate, pgDatabase } from '@tidings/outbox';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { services } from '../../../test/support/env.ts';

const opened: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((db) => db.close()));
});

function database() {
  const db = pgDatabase(services.postgres, { max: 2 });
  opened.push(db);
  return db;
}

describe('migrate', () => {
  it('creates the schema once; a second run applies nothing', async () => {
    const schema = `t_migrate_${randomBytes(4).toString('hex')}`;
    const db = database();
    const first = await migrate(db, { schema, partitions: 4 });
    const second = await migrate(db, { schema, partitions: 4 });
    expect(first.applied).toEqual(['0001_outbox.sql', '0002_feed_index.sql', '0003_json_payload.sql', '0004_commit_order.sql', '0005_cluster_identity.sql']);
    expect(second.applied).toEqual([]);
    const { rows } = await db.query<{ partitions: number }>(`SELECT partitions FROM "${schema}".settings`);
    expect(rows).toEqual([{ partitions: 4 }]);
    await db.query(`DROP SCHEMA "${schema}" CASCADE`);
  });

  it('applies each file exactly once when many processes migrate at the same moment', async () => {
    const schema = `t_migrate_${randomBytes(4).toString('hex')}`;
    const results = await Promise.all(Array.from({ length: 6 }, () => migrate(database(), { schema })));
    expect(results.flatMap((r) => r.applied).sort()).toEqual(['0001_outbox.sql', '0002_feed_index.sql', '0003_json_payload.sql', '0004_commit_order.sql', '0005_cluster_identity.sql']);
    const db = database();
    const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".migrations`);
    expect(rows[0]!.n).toBe(5);
    await db.query(`DROP SCHEMA "${schema}" CASCADE`);
  });

  it('rolls a failing migration back together with its version row', async () => {
    const schema = `t_migrate_${randomBytes(4).toString('hex')}`;
    const db = database();
    const folder = new URL(`file:///tmp/${schema}/`);
    const { mkdir, writeFile, rm } = await import('node:fs/promises');
    await mkdir(folder, { recursive: true });
    await writeFile(new URL('0001_ok.sql', folder), 'CREATE TABLE {{schema}}.a (x int);\n');
    await writeFile(new URL('0002_bad.sql', folder), 'CREATE TABLE {{schema}}.b (x int);\nSELECT no_such_function();\n');
    await expect(applyMigrations(db, schema, { component: 'demo', folder })).rejects.toThrow(/0002_bad\.sql failed/);
    const { rows } = await db.query<{ version: number }>(`SELECT version FROM "${schema}".migrations ORDER BY version`);
    expect(rows.map((r) => r.version)).toEqual([1]);
    const tables = await db.query(`SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'b'`, [schema]);
    expect(tables.rowCount).toBe(0);
    await rm(folder, { recursive: true });
    await db.query(`DROP SCHEMA "${schema}" CASCADE`);
  });

  it('refuses a schema name that is not a plain identifier', async () => {
    await expect(migrate(database(), { schema: 'bad"; drop table x; --' })).rejects.toThrow(/not a plain lower-case identifier/);
  });

  it('refuses a partition count out of range', async () => {
    await expect(migrate(database(), { partitions: 0 })).rejects.toThrow(/partitions/);
  });
});
