import { consumeRabbitmq, rabbitmqTransport, retryQueueName, type RabbitmqConsumerEvent } from '@tidings/relays/rabbitmq';
import { describeConsumer, createFaultProxy, type ConsumerHarness } from '@tidings/relays/testing';
import type pg from 'pg';
import { randomBytes } from 'node:crypto';
import { services } from '../../../test/support/env.ts';
import { transportDelivery } from '../../../test/support/transport-delivery.ts';
import { shareBrokerPerTest } from '../../../test/support/rabbitmq-broker-lock.ts';
import { rabbitmqctl, rabbitmqWorld, rawChannel } from '../../../test/support/rabbitmq-setup.ts';

/**
 * consumeRabbitmq over the real broker: events are published as the relay publishes them, the
 * consumer connects through a TCP fault proxy, and a crash is its connection cut right after the
 * commit, so the ack that follows never reaches RabbitMQ.
 */
async function rabbitmqConsumerHarness(): Promise<ConsumerHarness> {
  const world = await rabbitmqWorld('rmq_conformance');
  const target = new URL(services.rabbitmq);
  const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 5672) } });
  const proxied = new URL(services.rabbitmq);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  return {
    database: world.outbox.pool,
    schema: world.schema,
    configure: (overrides) =>
      consumeRabbitmq({ url: 'amqp://nowhere.invalid', queue: 'q', consumer: 'c', database: world.outbox.pool, handler: () => {}, ...overrides }),
    async start(run) {
      const raw = await rawChannel();
      const topic = `conformance.${randomBytes(4).toString('hex')}`;
      const queue = `test.conformance.${randomBytes(4).toString('hex')}`;
      let crashes = 0;
      const consumer = await consumeRabbitmq({
        url: proxied.toString(),
        queue,
        bindings: [topic],
        consumer: run.consumer,
        schema: world.schema,
        database: world.outbox.pool,
        heartbeatSeconds: 5,
        reconnect: { minDelayMs: 50, maxDelayMs: 500 },
        retry: run.retry,
        handler: (trx: pg.PoolClient, event) => run.handler(trx, event),
        onEvent: (event: RabbitmqConsumerEvent) => {
          if (run.crashAfterFirstCommit && crashes === 0 && event.type === 'committed' && event.applied) {
            crashes++;
            proxy.cutAll();
          }
          run.onEvent(event);
        },
      });
      const transport = rabbitmqTransport({ url: services.rabbitmq });
      const retryQueues: string[] = [];
      for (let delay = run.retry.minDelayMs; ; delay = Math.min(delay * 2, run.retry.maxDelayMs)) {
        retryQueues.push(retryQueueName(queue, delay));
        if (delay >= run.retry.maxDelayMs) break;
      }
      const deadLetters: string[] = [];
      return {
        consumer,
        get crashes() {
          return crashes;
        },
        ...transportDelivery(transport, topic),
        async pending() {
          // Ready and unacknowledged messages of the queue and its retry queues.
          const listing = await rabbitmqctl('list_queues', '-q', '--no-table-headers', 'name', 'messages');
          const mine = new Set([queue, ...retryQueues]);
          let messages = 0;
          for (const line of listing.split('\n')) {
            const [name, count] = line.trim().split(/\s+/);
            if (name && mine.has(name)) messages += Number(count);
          }
          return messages;
        },
        async deadLettered() {
          let message;
          while ((message = await raw.channel.get(`${queue}.dead-letter`, { noAck: true }))) deadLetters.push(String(message.properties.messageId));
          return deadLetters;
        },
        async close() {
          await consumer.close();
          for (const q of [queue, `${queue}.dead-letter`, ...retryQueues]) await raw.channel.deleteQueue(q).catch(() => {});
          await transport.close();
          await raw.close();
        },
      };
    },
    async close() {
      await proxy.close();
      await world.close();
    },
  };
}

shareBrokerPerTest();
describeConsumer('consumeRabbitmq', {
  transport: 'rabbitmq',
  onExhausted: 'dead-letter',
  orderedPerKey: true,
  countsAttempts: true,
  crash: 'its connection cut after the commit, before the ack',
}, rabbitmqConsumerHarness);
