/**
 * RabbitMQ: relay worker processes publish through a fault proxy (cut, or the broker unreachable)
 * to the `tidings` topic exchange. Two queues are bound to the run's topic: one a plain consumer
 * records in arrival order (the destination's view, duplicates included), the other two competing
 * `consumeRabbitmq` consumers apply through the inbox, each through a fault proxy of its own, so a
 * consumer's connection can be cut between commit and ack, or while it holds a message that
 * RabbitMQ then redelivers to the other consumer.
 */
import { consumeRabbitmq, decodeMessage, type RabbitmqConsumer } from '@tidings/relays/rabbitmq';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import pg from 'pg';
import { services } from '../../support/env.ts';
import type { FaultProxy } from '@tidings/relays/testing';
import { processFleet } from '../../support/property-fleet.ts';
import type { DestinationSpec } from '../destination.ts';
import type { Arrival } from '../history.ts';
import { applyEffect, readEffects } from '../inbox-consumer.ts';
import { postgresProxy, rabbitmqProxy } from '../proxies.ts';

const exchange = 'tidings';

/** Records every message of `queue` in arrival order, reconnecting when the connection drops. */
async function recordQueue(queue: string, topic: string): Promise<{ arrivals: Arrival[]; close(): Promise<void> }> {
  const arrivals: Arrival[] = [];
  let connection: ChannelModel | undefined;
  let channel: Channel | undefined;
  let closed = false;
  const open = async (): Promise<void> => {
    const next = await amqp.connect(services.rabbitmq);
    next.on('error', () => {});
    const ch = await next.createChannel();
    ch.on('error', () => {});
    await ch.assertExchange(exchange, 'topic', { durable: true });
    await ch.assertQueue(queue, { durable: true });
    await ch.bindQueue(queue, exchange, topic);
    await ch.prefetch(200);
    await ch.consume(queue, (message) => {
      if (!message) return;
      const event = decodeMessage(message);
      arrivals.push({ eventId: event.eventId, key: event.key });
      ch.ack(message);
    });
    connection = next;
    channel = ch;
    next.on('close', () => {
      if (!closed) setTimeout(() => void open().catch(() => {}), 200);
    });
  };
  await open();
  return {
    arrivals,
    async close() {
      closed = true;
      await channel?.deleteQueue(queue).catch(() => {});
      await connection?.close().catch(() => {});
    },
  };
}

export const rabbitmqDestination: DestinationSpec = {
  name: 'rabbitmq',
  ordered: true,
  faults: ['crash-relay', 'pause-relay', 'join-relay', 'cut-broker', 'broker-outage', 'cut-relay-db', 'duplicate-delivery', 'consumer-crash'],
  async create(context) {
    const { schema, topic } = context;
    const pool = new pg.Pool({ connectionString: services.postgres, max: 6 });
    pool.on('error', () => {});
    const broker = await rabbitmqProxy();
    const relayDb = await postgresProxy();
    const recorder = await recordQueue(`${topic}.arrivals`, topic);
    const effectsQueue = `${topic}.effects`;
    let holdNext = 0;
    let crashNext = 0;
    const errors: string[] = [];

    const startConsumer = async (name: string): Promise<{ consumer: RabbitmqConsumer; proxy: FaultProxy }> => {
      const { proxy, url } = await rabbitmqProxy();
      const consumer = await consumeRabbitmq({
        url,
        queue: effectsQueue,
        bindings: [topic],
        consumer: 'property',
        schema,
        database: pool,
        prefetch: 10,
        heartbeatSeconds: 5,
        connectTimeoutMs: 2_000,
        connectionName: `property ${name}`,
        reconnect: { minDelayMs: 50, maxDelayMs: 500 },
        retry: { attempts: 1_000, minDelayMs: 100, maxDelayMs: 100 },
        handler: async (trx: pg.PoolClient, event) => {
          let holdMs = 0;
          if (holdNext > 0) {
            // Drop this consumer's connection while its transaction is open: RabbitMQ hands the
            // message to the other consumer, which must wait for this commit and skip it.
            holdNext--;
            proxy.cutAll();
            holdMs = 1_000;
          }
          await context.swallower.handle(trx, event, () => applyEffect(trx, schema, { eventId: event.eventId, key: event.key }, holdMs));
        },
        onEvent: (event) => {
          if (event.type === 'committed' && crashNext > 0) {
            crashNext--;
            proxy.cutAll(); // committed, and the ack will never reach RabbitMQ
          }
          if (event.type === 'dead-lettered') errors.push(`consumer ${name} dead-lettered ${event.eventId}: ${event.error.message}`);
        },
      });
      return { consumer, proxy };
    };
    const consumers = [await startConsumer('a'), await startConsumer('b')];

    return {
      fleet: processFleet({
        databaseUrl: relayDb.url,
        schema,
        relay: context.relay,
        leaseMs: context.leaseMs,
        transport: () => ({
          kind: 'rabbitmq',
          options: { url: broker.url, connectTimeoutMs: 2_000, heartbeatSeconds: 5, sendTimeoutMs: 5_000, reconnect: { minDelayMs: 50, maxDelayMs: 500 } },
        }),
      }),
      cutBroker: async () => broker.proxy.cutAll(),
      brokerDown: async () => {
        broker.proxy.refuseNew(true);
        broker.proxy.cutAll();
      },
      brokerUp: async () => broker.proxy.refuseNew(false),
      cutRelayDatabase: async () => relayDb.proxy.cutAll(),
      duplicateDelivery: async (count) => void (holdNext += count),
      consumerCrash: async () => void crashNext++,
      heal: async () => broker.proxy.refuseNew(false),
      observe: async () => ({ arrivals: [...recorder.arrivals], effects: await readEffects(pool, schema) }),
      problems: () => [...errors],
      async close() {
        await Promise.all(consumers.map(({ consumer }) => consumer.close()));
        await recorder.close();
        const connection = await amqp.connect(services.rabbitmq);
        const channel = await connection.createChannel();
        for (const queue of [effectsQueue, `${effectsQueue}.retry.100ms`, `${effectsQueue}.dead-letter`]) await channel.deleteQueue(queue).catch(() => {});
        await connection.close().catch(() => {});
        await Promise.all([broker.proxy.close(), relayDb.proxy.close(), ...consumers.map(({ proxy }) => proxy.close())]);
        await pool.end();
      },
    };
  },
};
