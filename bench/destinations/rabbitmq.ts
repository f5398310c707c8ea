import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import type { OutboxEvent } from '@tidings/outbox';
import { encodeEvent, rabbitmqTransport } from '@tidings/relays/rabbitmq';
import type { Destination, Target } from './destination.ts';

/** The transport's default unconfirmed window, used by the direct publisher too. */
const maxUnconfirmed = 1_000;

/**
 * RabbitMQ: each target is a durable topic exchange with one durable classic queue bound to it,
 * so every message is routed and persisted before it is confirmed. Direct: one amqplib confirm
 * channel publishing the same encoded messages (persistent, mandatory) through a window of
 * 1 000 unconfirmed, waiting for `drain` when the socket is full — what the transport does.
 * `publishOne`: the same channel, one persistent mandatory message, resolved at its confirm.
 */
export async function rabbitmqDestination(url: string): Promise<Destination> {
  const admin = await amqp.connect(url);
  const channel = await admin.createChannel();
  return {
    name: 'rabbitmq',
    async target() {
      const name = `bench.${randomBytes(4).toString('hex')}`;
      await channel.assertExchange(name, 'topic', { durable: true });
      await channel.assertQueue(name, { durable: true, arguments: { 'x-queue-type': 'classic' } });
      await channel.bindQueue(name, name, '#');
      let client: Promise<{ connection: ChannelModel; channel: ConfirmChannel }> | undefined;
      const open = () =>
        (client ??= (async () => {
          const connection = await amqp.connect(url);
          const channel = await connection.createConfirmChannel();
          await channel.assertExchange(name, 'topic', { durable: true });
          return { connection, channel };
        })());
      return {
        transport: () => rabbitmqTransport({ url, exchange: name, maxUnconfirmed }),
        async direct(lanes) {
          await publishConfirmed((await open()).channel, name, lanes.flat());
        },
        async publishOne(event) {
          const { channel } = await open();
          const { content, properties } = encodeEvent(event);
          await new Promise<void>((resolve, reject) => {
            channel.publish(name, event.topic, content, { ...properties, mandatory: true }, (error: unknown) =>
              error ? reject(new Error(`RabbitMQ nacked ${event.eventId}`)) : resolve(),
            );
          });
        },
        async dispose() {
          await (await client)?.connection.close();
          await channel.deleteQueue(name);
          await channel.deleteExchange(name);
        },
      } satisfies Target;
    },
    async close() {
      await admin.close();
    },
  };
}

async function publishConfirmed(channel: ConfirmChannel, exchange: string, events: readonly OutboxEvent[]): Promise<void> {
  let unconfirmed = 0;
  let failure: Error | undefined;
  let returned = 0;
  let slotFree: (() => void) | undefined;
  const onReturn = (): void => void returned++;
  channel.on('return', onReturn);
  try {
    for (const event of events) {
      while (unconfirmed >= maxUnconfirmed) await new Promise<void>((resolve) => (slotFree = resolve));
      const { content, properties } = encodeEvent(event);
      unconfirmed++;
      const flushed = channel.publish(exchange, event.topic, content, { ...properties, mandatory: true }, (error: unknown) => {
        unconfirmed--;
        if (error) failure ??= new Error(`RabbitMQ nacked ${event.eventId}`);
        slotFree?.();
        slotFree = undefined;
      });
      if (!flushed) await once(channel, 'drain');
    }
    await channel.waitForConfirms();
  } finally {
    channel.off('return', onReturn);
  }
  if (failure) throw failure;
  if (returned > 0) throw new Error(`${returned} messages came back unroutable`);
}
