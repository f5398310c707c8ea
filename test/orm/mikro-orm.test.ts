import { EntitySchema, MikroORM, type EntityManager } from '@mikro-orm/postgresql';
import { services } from '../support/env.ts';
import type { TransactionOf } from '@tidings/relays/polling';
import { describeOrmHandle, sameType, type BusinessTable } from './orm-suite.ts';

interface Row {
  id: string;
}

describeOrmHandle<EntityManager>('MikroORM: the EntityManager of em.transactional()', async (schema) => {
  const entity = (name: string, table: BusinessTable) =>
    new EntitySchema<Row>({ name, tableName: table, schema, properties: { id: { type: 'string', primary: true } } });
  const entities: Record<BusinessTable, EntitySchema<Row>> = { orders: entity('Order', 'orders'), effects: entity('Effect', 'effects') };
  const orm = await MikroORM.init({
    clientUrl: services.postgres,
    entities: Object.values(entities),
    pool: { min: 0, max: 4 },
    debug: false,
  });
  sameType<TransactionOf<EntityManager>, EntityManager>(true);
  return {
    transaction: (fn) => orm.em.fork().transactional((em) => fn(em)),
    source: orm.em,
    txid: async (em) => (await em.execute<{ t: string }[]>('SELECT txid_current()::text AS t'))[0]!.t,
    insert: async (em, table, id) => {
      // Persisted through the unit of work and flushed now, inside the transaction.
      await em.persist(em.create(entities[table], { id })).flush();
    },
    swallowError: async (em) => {
      await em.execute('SELECT 1/0').catch(() => {});
    },
    outside: [orm.em.fork(), orm.em],
    close: () => orm.close(true),
  };
});
