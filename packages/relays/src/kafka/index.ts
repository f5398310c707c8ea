/**
 * @tidings/relays/kafka — the Kafka transport for tidings relays, and a consumer helper that
 * applies Kafka records exactly once.
 *
 * @example
 * import { createRelay, pgDatabase } from '@tidings/outbox';
 * import { consumeKafka, kafkaTransport } from '@tidings/relays/kafka';
 *
 * // producing side: committed outbox events to Kafka, at least once, in order per key
 * const relay = createRelay({
 *   name: 'kafka',
 *   database: pgDatabase(process.env.DATABASE_URL!),
 *   transport: kafkaTransport({ brokers: process.env.KAFKA_BROKERS! }),
 * });
 * await relay.start();
 *
 * // consuming side: each event applied once, in the consumer's own transaction
 * const consumer = await consumeKafka({
 *   brokers: process.env.KAFKA_BROKERS!,
 *   topics: ['orders.created'],
 *   consumer: 'billing',
 *   database: pool,
 *   handler: (client, event) => client.query('INSERT INTO invoices (order_id) VALUES ($1)', [event.key]),
 * });
 */
export { kafkaCapabilities, kafkaTransport, type KafkaTransport, type KafkaTransportStats } from './kafka-transport.ts';
export type { KafkaLibrary, KafkaTransportEvent, KafkaTransportOptions } from './transport-options.ts';
export type { KafkaProducerClient, KafkaProducerFactory, KafkaRecord } from './producer-client.ts';
export { kafkajsProducer, type KafkajsProducerOptions } from './kafkajs-producer.ts';
export { platformaticKafkaProducer, type KafkaBrokerAddress, type PlatformaticKafkaProducerOptions } from './platformatic-producer.ts';
export { createKafkaClient, type KafkaClientOptions, type KafkaLogEntry, type KafkaLogger, type KafkaLogLevel } from './kafka-client.ts';
export { decodeRecord, encodeEvent, kafkaHeaders, type EncodedRecord, type KafkaEvent, type KafkaMessageLike, type KafkaRecordPosition } from './record-codec.ts';
export {
  InvalidRecordError,
  KafkaEncodeError,
  KafkaSendError,
  type InvalidRecordReason,
  type KafkaEncodeReason,
  type KafkaSendReason,
} from './errors.ts';
export { consumeKafka, type KafkaConsumer } from './consume-kafka.ts';
export { checkpointSource } from './batch-processor.ts';
export type { ConsumeKafkaOptions, KafkaConsumerEvent, KafkaConsumerMode, TopicPartition } from './consumer-options.ts';
export type { KafkaDeadLetterReason } from './dead-letter-writer.ts';
export type * from '../shared/consumer-exports.ts';
export { wireVersion, type CloudEventsOptions } from '../shared/cloud-events.ts';
