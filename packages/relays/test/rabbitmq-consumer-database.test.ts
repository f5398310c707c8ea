import { createRelay, publish, TransactionAbortedError } from '@tidings/outbox';
import { consumeRabbitmq, retryQueueName, type RabbitmqConsumer, type RabbitmqConsumerEvent } from '@tidings/relays/rabbitmq';
import { rabbitmqTransport } from '@tidings/relays/rabbitmq';
import { createFaultProxy, type FaultProxy } from '@tidings/relays/testing';
import amqp from 'amqplib';
import pg from 'pg';
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { inTransaction } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';
import { shareBrokerPerTest } from '../../../test/support/rabbitmq-broker-lock.ts';
import { applicationsOver, rabbitmqWorld, rawChannel, type RabbitmqWorld } from '../../../test/support/rabbitmq-setup.ts';

let world: RabbitmqWorld;
const cleanups: (() => Promise<void>)[] = [];

shareBrokerPerTest();
beforeAll(async () => {
  world = await rabbitmqWorld('rmq_consumer_db');
  await world.outbox.pool.query(`CREATE TABLE "${world.schema}".orders (id text PRIMARY KEY)`);
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});
afterAll(async () => {
  await world?.close();
});

async function deleteQueues(queue: string): Promise<void> {
  const raw = await rawChannel();
  for (const q of [queue, `${queue}.dead-letter`, ...[50, 100].map((d) => retryQueueName(queue, d))]) await raw.channel.deleteQueue(q).catch(() => {});
  await raw.close();
}

describe('the RabbitMQ consumer and its database', () => {
  it('does not ack an event whose handler swallowed a SQL error: it is retried and applied once (outbox → relay → RabbitMQ → consumer)', async () => {
    const topic = `swallow.${randomBytes(4).toString('hex')}`;
    const queue = `test.swallow.${randomBytes(4).toString('hex')}`;
    const events: RabbitmqConsumerEvent[] = [];
    let runs = 0;
    const consumer: RabbitmqConsumer = await consumeRabbitmq({
      url: services.rabbitmq,
      queue,
      bindings: [topic],
      consumer: 'swallow',
      schema: world.schema,
      database: world.outbox.pool,
      retry: { attempts: 5, minDelayMs: 50, maxDelayMs: 50 },
      reconnect: { minDelayMs: 50, maxDelayMs: 200 },
      handler: async (trx: pg.PoolClient, event) => {
        await trx.query(`INSERT INTO "${world.schema}".effects (consumer, event_id, key) VALUES ('swallow', $1, $2)`, [event.eventId, event.key]);
        if (runs++ < 2) {
          // A careless handler: the duplicate key aborts the transaction, and the error is swallowed.
          await trx.query(`INSERT INTO "${world.schema}".orders (id) VALUES ('taken') ON CONFLICT DO NOTHING`);
          await trx.query(`INSERT INTO "${world.schema}".orders (id) VALUES ('taken')`).catch(() => {});
        }
      },
      onEvent: (event) => events.push(event),
    });
    cleanups.push(() => deleteQueues(queue), () => consumer.close());
    const relay = createRelay({
      name: `swallow-${randomBytes(3).toString('hex')}`,
      database: world.outbox.db,
      schema: world.schema,
      topics: [topic],
      transport: rabbitmqTransport({ url: services.rabbitmq }),
      pollIntervalMs: 50,
    });
    await relay.start();
    cleanups.push(() => relay.stop());

    const [published] = await inTransaction(world.outbox.pool, (client) => publish(client, { topic, key: 'order-1', payload: { n: 1 } }, { schema: world.schema }));

    await waitUntil('the event was applied', async () => (await world.effects('swallow')).length === 1);
    expect(await world.effects('swallow')).toEqual([{ event_id: published!.eventId, key: 'order-1' }]);
    const marks = await world.outbox.pool.query(`SELECT 1 FROM "${world.schema}".inbox WHERE consumer = 'swallow'`);
    expect(marks.rowCount).toBe(1);
    const retries = events.filter((e) => e.type === 'retry-scheduled');
    expect(retries).toHaveLength(2);
    expect(retries.every((e) => e.type === 'retry-scheduled' && e.error instanceof TransactionAbortedError)).toBe(true);
    expect(events.filter((e) => e.type === 'committed')).toEqual([expect.objectContaining({ eventId: published!.eventId, applied: true, attempt: 3 })]);
  });

  it('keeps a key in order while PostgreSQL is cut mid-stream: the failed event is retried in place', async () => {
    const target = new URL(services.postgres);
    const proxy: FaultProxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 5432) } });
    cleanups.push(() => proxy.close());
    const proxied = new URL(services.postgres);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(proxy.port);
    const pool = new pg.Pool({ connectionString: proxied.toString(), max: 4, connectionTimeoutMillis: 2_000 });
    pool.on('error', () => {});
    cleanups.push(() => pool.end());

    const topic = `pgcut.${randomBytes(4).toString('hex')}`;
    const queue = `test.pgcut.${randomBytes(4).toString('hex')}`;
    const events: RabbitmqConsumerEvent[] = [];
    let handled = 0;
    const consumer = await consumeRabbitmq({
      url: services.rabbitmq,
      queue,
      bindings: [topic],
      consumer: 'pgcut',
      schema: world.schema,
      database: pool,
      prefetch: 50,
      reconnect: { minDelayMs: 20, maxDelayMs: 200 },
      handler: async (trx: pg.PoolClient, event) => {
        await trx.query(`INSERT INTO "${world.schema}".effects (consumer, event_id, key) VALUES ('pgcut', $1, $2)`, [event.eventId, event.key]);
        // PostgreSQL goes away in the middle of the stream, with later events of the key prefetched.
        if (++handled === 5) {
          proxy.refuseNew(true);
          proxy.cutAll();
          setTimeout(() => proxy.refuseNew(false), 500);
        }
      },
      onEvent: (event) => events.push(event),
    });
    cleanups.push(() => deleteQueues(queue), () => consumer.close());

    const raw = await amqp.connect(services.rabbitmq);
    const channel = await raw.createConfirmChannel();
    const ids = Array.from({ length: 40 }, (_, i) => `evt-${String(i).padStart(2, '0')}-${randomBytes(4).toString('hex')}`);
    for (const [i, id] of ids.entries()) {
      channel.publish('tidings', topic, Buffer.from(JSON.stringify({ i })), { persistent: true, messageId: id, type: topic, headers: { 'x-tidings-key': 'k1' } });
    }
    await channel.waitForConfirms();
    await raw.close();

    await waitUntil('every event was applied', async () => new Set((await world.effects('pgcut')).map((r) => r.event_id)).size === ids.length, 30_000);
    const effects = await world.effects('pgcut');
    expect(applicationsOver(effects)).toEqual([]);
    expect(effects.map((r) => r.event_id)).toEqual(ids);
    expect(events.some((e) => e.type === 'error')).toBe(true);
  });
});
