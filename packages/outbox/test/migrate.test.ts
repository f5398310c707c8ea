import { logStart, migrate, pgDatabase, publish, readPartition, type Executor, type Position } from '@tidings/outbox';
import { applyMigrations } from '@tidings/outbox/internal';
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
    expect(first.applied).toEqual(['0001_outbox.sql', '0002_feed_index.sql', '0003_json_payload.sql', '0004_key_parking.sql', '0005_commit_order.sql', '0006_cluster_identity.sql', '0007_retention_index.sql', '0008_dead_letter_expiry.sql']);
    expect(second.applied).toEqual([]);
    const { rows } = await db.query<{ partitions: number }>(`SELECT partitions FROM "${schema}".settings`);
    expect(rows).toEqual([{ partitions: 4 }]);
    // The count is fixed at creation: another one is refused, saying why and what to do, and nothing changes.
    const refused = await migrate(db, { schema, partitions: 8 }).catch((error: unknown) => error);
    expect(refused).toMatchObject({ name: 'ConfigError', option: 'partitions' });
    expect((refused as Error).message).toMatch(/has 4 partitions, fixed when it was created.*Leave partitions out/);
    expect((await db.query(`SELECT partitions FROM "${schema}".settings`)).rows).toEqual([{ partitions: 4 }]);
    expect((await migrate(db, { schema })).applied).toEqual([]);
    await db.query(`DROP SCHEMA "${schema}" CASCADE`);
  });

  it('applies each file exactly once when many processes migrate at the same moment', async () => {
    const schema = `t_migrate_${randomBytes(4).toString('hex')}`;
    const results = await Promise.all(Array.from({ length: 6 }, () => migrate(database(), { schema })));
    expect(results.flatMap((r) => r.applied).sort()).toEqual(['0001_outbox.sql', '0002_feed_index.sql', '0003_json_payload.sql', '0004_key_parking.sql', '0005_commit_order.sql', '0006_cluster_identity.sql', '0007_retention_index.sql', '0008_dead_letter_expiry.sql']);
    const db = database();
    const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".migrations`);
    expect(rows[0]!.n).toBe(8);
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

  it('upgrades an outbox of the (tx_id, id) era: existing events keep their order, relay cursors their place', async () => {
    const schema = `t_migrate_${randomBytes(4).toString('hex')}`;
    const db = database();
    const { mkdir, copyFile, rm } = await import('node:fs/promises');
    const old = new URL(`file:///tmp/${schema}-old/`);
    await mkdir(old, { recursive: true });
    for (const name of ['0001_outbox.sql', '0002_feed_index.sql', '0003_json_payload.sql']) {
      await copyFile(new URL(`../migrations/${name}`, import.meta.url), new URL(name, old));
    }
    await applyMigrations(db, schema, { component: 'outbox', folder: old, values: { partitions: 1 } });
    await rm(old, { recursive: true });
    const s = `"${schema}"`;
    const insert = (client: { query: Executor['query'] }, payload: string) =>
      client.query(`INSERT INTO ${s}.events (event_id, topic, key, partition, payload) VALUES ($1, 't', 'k', 0, $2::json)`, [
        `${schema}-${payload}`,
        JSON.stringify(payload),
      ]);
    // `early` gets its transaction id first and commits last: the old order put it first.
    await db.transaction(async (early) => {
      await insert(early, 'early');
      await db.transaction((t) => insert(t, 'a'));
      await db.transaction((t) => insert(t, 'b'));
    });
    await db.transaction((t) => insert(t, 'c'));
    // A relay that had delivered early and a, as the old cursor (tx_id, id) says.
    const { rows: at } = await db.query<{ tx: string; id: string }>(`SELECT tx_id::text AS tx, id::text AS id FROM ${s}.events WHERE payload::text = '"a"'`);
    await db.query(`INSERT INTO ${s}.relay_partitions (relay, partition, cursor_tx, cursor_id) VALUES ('old', 0, $1::xid8, $2)`, [at[0]!.tx, at[0]!.id]);

    expect((await migrate(db, { schema })).applied).toEqual(['0004_key_parking.sql', '0005_commit_order.sql', '0006_cluster_identity.sql', '0007_retention_index.sql', '0008_dead_letter_expiry.sql']);
    const read = async (after: Position) => (await readPartition(db, schema, { partition: 0, after, limit: 100 })).events.map((e) => e.payload);
    expect(await read(logStart)).toEqual(['early', 'a', 'b', 'c']);
    const { rows } = await db.query<{ seq: string; id: string }>(`SELECT cursor_seq::text AS seq, cursor_id::text AS id FROM ${s}.relay_partitions WHERE relay = 'old'`);
    expect(await read(rows[0]!)).toEqual(['b', 'c']);
    // New transactions are numbered after every existing event.
    await db.transaction((t) => publish(t, { topic: 't', key: 'k', payload: 'new' }, { schema }));
    expect(await read(rows[0]!)).toEqual(['b', 'c', 'new']);
    await db.query(`DROP SCHEMA ${s} CASCADE`);
  });
});
