import { DataSource, EntitySchema, type EntityManager, type QueryRunner } from 'typeorm';
import { services } from '../support/env.ts';
import type { TransactionOf } from '@tidings/relays/polling';
import { describeOrmHandle, sameType, type BusinessTable, type OrmKit } from './orm-suite.ts';

/** A data source with the business tables as TypeORM entities, in the suite's schema. */
async function dataSource(schema: string): Promise<DataSource> {
  const entity = (name: string, table: BusinessTable) =>
    new EntitySchema<{ id: string }>({ name, tableName: table, schema, columns: { id: { type: 'text', primary: true } } });
  const source = new DataSource({ type: 'postgres', url: services.postgres, poolSize: 4, entities: [entity('Order', 'orders'), entity('Effect', 'effects')] });
  return source.initialize();
}

const entityOf: Record<BusinessTable, string> = { orders: 'Order', effects: 'Effect' };

/** What both kinds of handle share: writes go through the entity manager, raw statements through query(). */
function common<Trx extends EntityManager | QueryRunner>(manager: (trx: Trx) => EntityManager): Pick<OrmKit<Trx>, 'txid' | 'insert' | 'swallowError'> {
  return {
    txid: async (trx) => ((await manager(trx).query('SELECT txid_current()::text AS t')) as { t: string }[])[0]!.t,
    insert: async (trx, table, id) => {
      await manager(trx).insert(entityOf[table], { id });
    },
    swallowError: async (trx) => {
      await manager(trx)
        .query('SELECT 1/0')
        .catch(() => {});
    },
  };
}

describeOrmHandle<EntityManager>('TypeORM: the EntityManager of dataSource.transaction()', async (schema) => {
  const source = await dataSource(schema);
  sameType<TransactionOf<DataSource>, EntityManager>(true);
  sameType<TransactionOf<EntityManager>, EntityManager>(true);
  return {
    ...common<EntityManager>((manager) => manager),
    source,
    transaction: (fn) => source.transaction((manager) => fn(manager)),
    outside: [source.manager, source],
    close: () => source.destroy(),
  };
});

describeOrmHandle<QueryRunner>('TypeORM: a QueryRunner after startTransaction()', async (schema) => {
  const source = await dataSource(schema);
  const idle = source.createQueryRunner();
  await idle.connect();
  return {
    ...common<QueryRunner>((runner) => runner.manager),
    async transaction(fn) {
      const runner = source.createQueryRunner();
      await runner.connect();
      await runner.startTransaction();
      try {
        const result = await fn(runner);
        await runner.commitTransaction();
        return result;
      } catch (error) {
        await runner.rollbackTransaction();
        throw error;
      } finally {
        await runner.release();
      }
    },
    // A consumer helper hands a QueryRunner's kit the manager of a DataSource transaction; the
    // suite's handler writes through runner.manager, which an EntityManager has not: give it one.
    source: <R>(work: (runner: QueryRunner) => Promise<R>) => source.transaction((manager) => work(manager.queryRunner!)),
    outside: [idle],
    async close() {
      await idle.release();
      await source.destroy();
    },
  };
});
