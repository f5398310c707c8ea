/**
 * @tidings/relays/rabbitmq — the RabbitMQ transport for tidings relays.
 *
 * @example
 * import { createRelay, pgDatabase } from '@tidings/outbox';
 * import { rabbitmqTransport } from '@tidings/relays/rabbitmq';
 *
 * const relay = createRelay({
 *   name: 'rabbitmq',
 *   database: pgDatabase(process.env.DATABASE_URL!),
 *   transport: rabbitmqTransport({ url: process.env.RABBITMQ_URL! }),
 * });
 * await relay.start();
 */
export { rabbitmqCapabilities, rabbitmqTransport, type RabbitmqTransport, type RabbitmqTransportStats } from './rabbitmq-transport.ts';
export type { RabbitmqRoute, RabbitmqTransportEvent, RabbitmqTransportOptions } from './transport-options.ts';
export type { ExchangeDeclaration } from './confirm-link.ts';
export type { ConnectionSettings, RabbitmqUrl } from './connection.ts';
export { amqpHeaders, decodeMessage, encodeEvent, type AmqpMessageLike, type EncodedMessage } from './message-codec.ts';
export {
  InvalidMessageError,
  RabbitmqConnectionError,
  RabbitmqEncodeError,
  RabbitmqNackError,
  RabbitmqUnroutableError,
  type DeadLetterReason,
  type RabbitmqConnectionReason,
  type UnroutableReason,
} from './errors.ts';
export { consumeRabbitmq, type RabbitmqConsumer } from './consume-rabbitmq.ts';
export { retryQueueName, type ConsumeRabbitmqOptions, type QueueBinding, type RabbitmqConsumerEvent } from './consumer-options.ts';
export type * from '../shared/consumer-exports.ts';
export { wireVersion, type CloudEventsOptions } from '../shared/cloud-events.ts';
