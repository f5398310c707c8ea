import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { amqplib } from '../rabbitmq/connection.ts';
import { decodeMessage } from '../rabbitmq/message-codec.ts';
import { rabbitmqTransport, type RabbitmqTransport } from '../rabbitmq/rabbitmq-transport.ts';
import type { RabbitmqTransportOptions } from '../rabbitmq/transport-options.ts';
import { collectingSubscription, type CollectingSubscription } from './conformance-subscription.ts';
import { createFaultProxy, type FaultProxy } from './fault-proxy.ts';
import type { ReceivedMessage, Subscription, TransportHarness } from './harness.ts';

export interface RabbitmqHarnessOptions {
  /** The broker. Default `RABBITMQ_URL`, else `amqp://guest:guest@127.0.0.1:5672`. */
  readonly url?: string;
  /** Options of every transport the harness creates (they connect through the fault proxy). */
  readonly transport?: Omit<RabbitmqTransportOptions, 'url'>;
}

/** The RabbitMQ conformance harness, with its fault proxy and URLs for extra tests. */
export interface RabbitmqHarness extends TransportHarness {
  /** Sits between the harness's transports and the broker; subscriptions bypass it. */
  readonly proxy: FaultProxy;
  /** The broker's own URL. */
  readonly url: string;
  /** The broker's URL through the fault proxy. */
  readonly proxiedUrl: string;
  createTransport(options?: Omit<RabbitmqTransportOptions, 'url'>): Promise<RabbitmqTransport>;
}

/**
 * A {@link TransportHarness} over a real RabbitMQ. Transports connect through a {@link FaultProxy},
 * so `cutConnections()` resets their connections and `takeDown()` makes the broker unreachable
 * (open connections reset, new ones refused) while the broker itself keeps running. Subscribers
 * connect directly and read durable queues bound to the topic, so they also survive a real broker
 * restart.
 *
 * @example
 * describeTransport('rabbitmq', rabbitmqCapabilities, () => rabbitmqHarness({ url: process.env.RABBITMQ_URL }));
 */
export async function rabbitmqHarness(options: RabbitmqHarnessOptions = {}): Promise<RabbitmqHarness> {
  const url = options.url ?? process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
  const target = new URL(url);
  const proxy = await createFaultProxy({ target: { host: target.hostname || '127.0.0.1', port: Number(target.port || 5672) } });
  const proxied = new URL(url);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  const proxiedUrl = proxied.toString();
  const exchange = options.transport?.exchange ?? 'tidings';
  const transports = new Set<RabbitmqTransport>();
  const subscriptions = new Set<Subscription>();

  return {
    proxy,
    url,
    proxiedUrl,
    async createTransport(overrides = {}) {
      const transport = rabbitmqTransport({
        connectTimeoutMs: 3_000,
        heartbeatSeconds: 5,
        reconnect: { minDelayMs: 50, maxDelayMs: 500 },
        ...options.transport,
        ...overrides,
        url: proxiedUrl,
      });
      transports.add(transport);
      return transport;
    },
    async subscribe(topic) {
      const subscription = collectingSubscription(topic, async () => {
        subscriptions.delete(subscription);
        await watcher.close();
      });
      const watcher = await watchTopic(url, exchange, topic, subscription);
      subscriptions.add(subscription);
      return subscription;
    },
    faults: {
      async takeDown() {
        proxy.refuseNew(true);
        proxy.cutAll();
      },
      async recover() {
        proxy.refuseNew(false);
      },
      async cutConnections() {
        proxy.cutAll();
      },
    },
    async close() {
      proxy.refuseNew(false);
      await Promise.allSettled([...transports].map((transport) => transport.close()));
      await Promise.allSettled([...subscriptions].map((subscription) => subscription.close()));
      await proxy.close();
    },
  };
}

/**
 * Consumes a durable queue of its own bound to `topic`, reconnecting whenever the connection
 * drops, until closed; the queue is deleted on close.
 */
async function watchTopic(url: string, exchange: string, topic: string, subscription: CollectingSubscription): Promise<{ close(): Promise<void> }> {
  const queue = `tidings.harness.${randomBytes(6).toString('hex')}`;
  let closed = false;
  let connection: ChannelModel | undefined;
  let channel: Channel | undefined;

  const deliver = (from: Channel, message: ConsumeMessage | null): void => {
    if (!message) return;
    subscription.push(toReceived(message));
    try {
      from.ack(message);
    } catch {
      // The channel is gone; the broker redelivers, and duplicates are allowed.
    }
  };
  const start = async (): Promise<void> => {
    const next = await amqplib().connect(url);
    next.on('error', () => {});
    try {
      const ch = await next.createChannel();
      ch.on('error', () => {});
      await ch.assertExchange(exchange, 'topic', { durable: true });
      await ch.assertQueue(queue, { durable: true });
      await ch.bindQueue(queue, exchange, topic);
      await ch.prefetch(500);
      connection = next;
      channel = ch;
      await ch.consume(queue, (message) => deliver(ch, message));
      next.on('close', () => void reconnect());
    } catch (error) {
      await next.close().catch(() => {});
      throw error;
    }
  };
  const reconnect = async (): Promise<void> => {
    while (!closed) {
      await sleep(200);
      try {
        await start();
        return;
      } catch {
        // The broker is still away; try again.
      }
    }
  };

  await start();
  return {
    async close() {
      closed = true;
      try {
        await channel?.deleteQueue(queue);
      } catch {
        // Best effort: a restarted broker may have the connection closed under us.
      }
      await connection?.close().catch(() => {});
    },
  };
}

function toReceived(message: ConsumeMessage): ReceivedMessage {
  try {
    const event = decodeMessage(message);
    return { eventId: event.eventId, topic: event.topic, key: event.key, headers: event.headers, payload: event.payload };
  } catch (error) {
    // Shows up as an unexpected id, with the reason, in the suite's report.
    return { eventId: `undecodable: ${(error as Error).message}`, topic: message.fields.routingKey, key: null, headers: {}, payload: null };
  }
}
