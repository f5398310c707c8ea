import type { Kafka, Message, PartitionerArgs, Producer } from 'kafkajs';
import { createKafkaClient, kafkajs, type KafkaClientOptions } from './kafka-client.ts';
import type { KafkaProducerClient, KafkaProducerFactory, KafkaRecord } from './producer-client.ts';

/** How the kafkajs producers are made. */
export interface KafkajsProducerOptions {
  /** A kafkajs client of your own, or the settings to make one. */
  readonly kafka: Kafka | KafkaClientOptions;
  /** `gzip` compresses each request. Default `none`. */
  readonly compression?: 'none' | 'gzip';
  /** How long the broker may wait for all in-sync replicas (acks=all) before it answers. Default 30 000 ms. */
  readonly ackTimeoutMs?: number;
  /** Whether producing to a missing topic may create it (if the broker allows). Default true. */
  readonly allowAutoTopicCreation?: boolean;
  /**
   * Retries kafkajs makes of a failed request, with the same producer id and sequence numbers, so
   * Kafka discards the copies that did arrive. Default 5 (100 ms to 2 s apart).
   */
  readonly retries?: number;
}

/**
 * The kafkajs implementation of the transport's client seam: idempotent producers (acks=all,
 * one request in flight per broker), one `sendBatch` per call, and a partitioner that hashes the
 * key like Kafka's Java client (murmur2), or the event id when there is no key.
 *
 * @example
 * const transport = kafkaTransport({
 *   producer: kafkajsProducer({ kafka: { brokers: 'localhost:9092', clientId: 'orders' }, compression: 'gzip' }),
 * });
 */
export function kafkajsProducer(options: KafkajsProducerOptions): KafkaProducerFactory {
  const kafka = isKafka(options.kafka) ? options.kafka : createKafkaClient(options.kafka);
  const { CompressionTypes } = kafkajs();
  const compression = options.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None;
  const ackTimeoutMs = options.ackTimeoutMs ?? 30_000;
  return () => {
    const producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: options.allowAutoTopicCreation ?? true,
      createPartitioner: hashingPartitioner,
      retry: { retries: Math.max(1, options.retries ?? 5), initialRetryTime: 100, maxRetryTime: 2_000 },
    });
    return new KafkajsProducerClient(producer, compression, ackTimeoutMs);
  };
}

class KafkajsProducerClient implements KafkaProducerClient {
  readonly #producer: Producer;
  readonly #compression: number;
  readonly #ackTimeoutMs: number;
  #connecting: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(producer: Producer, compression: number, ackTimeoutMs: number) {
    this.#producer = producer;
    this.#compression = compression;
    this.#ackTimeoutMs = ackTimeoutMs;
  }

  async produce(records: readonly KafkaRecord[], signal: AbortSignal): Promise<void> {
    if (this.#closing) throw new Error('this producer client is closed');
    // kafkajs cannot cancel a request; on abort the transport stops waiting, and closing the
    // producer ends its retries sooner.
    const onAbort = (): void => void this.close();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await (this.#connecting ??= this.#producer.connect());
      await this.#producer.sendBatch({ acks: -1, timeout: this.#ackTimeoutMs, compression: this.#compression, topicMessages: byTopic(records) });
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  close(): Promise<void> {
    this.#closing ??= this.#producer.disconnect().catch(() => {});
    return this.#closing;
  }
}

/** The event id of each message without a key, for the partitioner. */
const partitionKeys = new WeakMap<Message, string>();

/** Records grouped by topic, in order, as kafkajs messages. */
function byTopic(records: readonly KafkaRecord[]): { topic: string; messages: Message[] }[] {
  const topics = new Map<string, Message[]>();
  for (const record of records) {
    const message: Message = { key: record.key, value: record.value, headers: { ...record.headers } };
    if (record.key === null) partitionKeys.set(message, record.partitionKey);
    let messages = topics.get(record.topic);
    if (!messages) topics.set(record.topic, (messages = []));
    messages.push(message);
  }
  return [...topics].map(([topic, messages]) => ({ topic, messages }));
}

/**
 * kafkajs's default partitioner (murmur2 of the key, as Kafka's Java client), but a message without
 * a key is hashed by its event id instead of going round-robin, so a retried request puts every
 * record in the same partition (and under the same sequence numbers) as before.
 */
function hashingPartitioner() {
  const partition = kafkajs().Partitioners.DefaultPartitioner();
  return (args: PartitionerArgs): number => {
    const partitionKey = args.message.key == null ? partitionKeys.get(args.message) : undefined;
    return partitionKey === undefined ? partition(args) : partition({ ...args, message: { ...args.message, key: partitionKey } });
  };
}

function isKafka(value: Kafka | KafkaClientOptions): value is Kafka {
  return typeof (value as Kafka).producer === 'function';
}
