import type { Channel } from 'amqplib';
import { retryQueueName, type ResolvedConsumerOptions } from './consumer-options.ts';
import type { TransactionSource } from '../shared/transaction-source.ts';

/**
 * Declares what the consumer helper relies on; every step is idempotent, so it runs on each
 * (re)connection:
 * - the queue (durable) and its bindings, unless `declareQueue` is false;
 * - one retry queue per distinct delay, with that delay as a queue-wide TTL and the default
 *   exchange as dead-letter exchange, routing back to the queue by name. A queue-wide TTL (not a
 *   per-message one) means messages expire in arrival order, so none waits behind a longer one,
 *   and routing by queue name returns a retried message to this queue only, never to the other
 *   queues bound to the same topic;
 * - the dead-letter exchange (durable topic) and, unless disabled, a dead-letter queue bound to
 *   it with this queue's name as routing key.
 */
export async function declareConsumerTopology(channel: Channel, options: ResolvedConsumerOptions<TransactionSource>): Promise<void> {
  const { queue } = options;
  if (options.declareQueue) {
    await channel.assertQueue(queue, { durable: true, arguments: options.queueArguments });
    if (options.bindings.some((binding) => binding.exchange === options.exchange)) {
      await channel.assertExchange(options.exchange, 'topic', { durable: true });
    }
    for (const binding of options.bindings) await channel.bindQueue(queue, binding.exchange, binding.routingKey);
  } else {
    await channel.checkQueue(queue);
  }
  for (const delayMs of new Set(options.delays)) {
    await channel.assertQueue(retryQueueName(queue, delayMs), {
      durable: true,
      arguments: { 'x-message-ttl': delayMs, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': queue },
    });
  }
  await channel.assertExchange(options.deadLetterExchange, 'topic', { durable: true });
  if (options.deadLetterQueue !== undefined) {
    await channel.assertQueue(options.deadLetterQueue, { durable: true });
    await channel.bindQueue(options.deadLetterQueue, options.deadLetterExchange, queue);
  }
}
