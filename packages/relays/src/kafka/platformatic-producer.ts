import type { MessageToProduce, Producer, ProducerOptions, SASLOptions } from '@platformatic/kafka';
import { ConfigError } from '@tidings/outbox';
import type { ConnectionOptions } from 'node:tls';
import { requirePackage } from '../shared/optional-package.ts';
import { brokerList } from './kafka-client.ts';
import type { KafkaProducerClient, KafkaProducerFactory, KafkaRecord } from './producer-client.ts';

type PlatformaticKafka = typeof import('@platformatic/kafka');

let loaded: PlatformaticKafka | undefined;

/** @platformatic/kafka, loaded at first use (an optional peer dependency); a MissingPackageError when absent. */
export function platformaticKafka(): PlatformaticKafka {
  return (loaded ??= requirePackage<PlatformaticKafka>('@platformatic/kafka', 'Kafka with the @platformatic/kafka client (platformaticKafkaProducer, library: "platformatic")'));
}

/** A broker's address, as Kafka's metadata names it or as a client connects to it. */
export interface KafkaBrokerAddress {
  readonly host: string;
  readonly port: number;
}

/** How the @platformatic/kafka producers are made. */
export interface PlatformaticKafkaProducerOptions {
  /** Bootstrap brokers: `host:port`, a comma-separated list, or an array. */
  readonly brokers: string | readonly string[];
  /** Shown in broker logs and quotas. Default `tidings`. */
  readonly clientId?: string;
  /** TLS settings (node:tls); `true` for TLS with the system's trusted certificates. */
  readonly ssl?: boolean | ConnectionOptions;
  /** SASL settings as @platformatic/kafka takes them, e.g. `{ mechanism: 'SCRAM-SHA-512', username, password }`. */
  readonly sasl?: SASLOptions;
  /** Opening a TCP connection gives up after this long. Default 3 000 ms. */
  readonly connectTimeoutMs?: number;
  /** A request without a response after this long fails (and the send reports `unavailable`). Default 30 000 ms. */
  readonly requestTimeoutMs?: number;
  /** How long the broker may wait for all in-sync replicas (acks=all) before it answers. Default 30 000 ms. */
  readonly ackTimeoutMs?: number;
  /** `gzip` compresses each request. Default `none`. */
  readonly compression?: 'none' | 'gzip';
  /** Whether producing to a missing topic may create it (if the broker allows). Default true. */
  readonly allowAutoTopicCreation?: boolean;
  /** Retries of a failed request, with the same producer id and sequence numbers. Default 5. */
  readonly retries?: number;
  /**
   * Where to connect for a broker that the cluster's metadata names, e.g. a local port forwarded to
   * it, or a proxy. Applied to the bootstrap brokers too. Default: the address as named.
   */
  readonly connectTo?: (broker: KafkaBrokerAddress) => KafkaBrokerAddress;
}

/**
 * The @platformatic/kafka implementation of the transport's client seam, the alternative to
 * {@link kafkajsProducer}: an idempotent producer (acks=all, one request in flight per broker), one
 * `send` per call, and partitions chosen as the kafkajs producer chooses them (murmur2 of the key,
 * as Kafka's Java client, or of the event id when there is no key), so switching clients keeps
 * every key in its partition. The records on the wire are the same, header for header.
 *
 * @example
 * const transport = kafkaTransport({
 *   producer: platformaticKafkaProducer({ brokers: 'localhost:9092', clientId: 'orders' }),
 * });
 */
export function platformaticKafkaProducer(options: PlatformaticKafkaProducerOptions): KafkaProducerFactory {
  if (typeof options !== 'object' || options === null) throw new ConfigError('options', 'pass an object with at least { brokers }');
  const compression = options.compression ?? 'none';
  if (compression !== 'none' && compression !== 'gzip') throw new ConfigError('compression', `expected "none" or "gzip", got ${JSON.stringify(compression)}`);
  if (options.connectTo !== undefined && typeof options.connectTo !== 'function') throw new ConfigError('connectTo', 'expected a function (broker) => { host, port }');
  const kafka = platformaticKafka();
  const connectTo = options.connectTo ?? ((broker: KafkaBrokerAddress) => broker);
  const bootstrapBrokers = brokerList(options.brokers).map((address) => {
    const at = address.lastIndexOf(':');
    const broker = at < 0 ? { host: address, port: 9092 } : { host: address.slice(0, at), port: Number(address.slice(at + 1)) };
    return { ...connectTo(broker) };
  });
  const tls = options.ssl === true ? {} : options.ssl === false ? undefined : options.ssl;
  const settings: ProducerOptions<Buffer, Buffer, string, string> = {
    clientId: options.clientId ?? 'tidings',
    bootstrapBrokers,
    idempotent: true,
    acks: kafka.ProduceAcks.ALL,
    compression: compression === 'gzip' ? 'gzip' : 'none',
    autocreateTopics: options.allowAutoTopicCreation ?? true,
    retries: Math.max(2, options.retries ?? 5),
    retryDelay: 100,
    connectTimeout: options.connectTimeoutMs ?? 3_000,
    requestTimeout: options.requestTimeoutMs ?? 30_000,
    timeout: options.ackTimeoutMs ?? 30_000,
    serializers: { headerKey: kafka.stringSerializer, headerValue: kafka.stringSerializer },
    partitioner: hashingPartitioner(kafka),
    ...(tls === undefined ? {} : { tls }),
    ...(options.sasl === undefined ? {} : { sasl: options.sasl }),
  };
  return () => {
    const producer = new kafka.Producer({ ...settings });
    return new PlatformaticProducerClient(options.connectTo === undefined ? producer : redirect(kafka, producer, connectTo));
  };
}

class PlatformaticProducerClient implements KafkaProducerClient {
  readonly #producer: Producer<Buffer, Buffer, string, string>;
  #closing: Promise<void> | undefined;

  constructor(producer: Producer<Buffer, Buffer, string, string>) {
    this.#producer = producer;
  }

  async produce(records: readonly KafkaRecord[], signal: AbortSignal): Promise<void> {
    if (this.#closing) throw new Error('this producer client is closed');
    // A request cannot be cancelled; on abort the transport stops waiting, and closing the
    // producer ends its retries sooner.
    const onAbort = (): void => void this.close();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await this.#producer.send({ messages: records.map(toMessage) });
    } catch (error) {
      throw withKafkaType(error);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  close(): Promise<void> {
    this.#closing ??= this.#producer.close(true).catch(() => {});
    return this.#closing;
  }
}

function toMessage(record: KafkaRecord): MessageToProduce<Buffer, Buffer, string, string> {
  return {
    topic: record.topic,
    ...(record.key === null ? {} : { key: Buffer.from(record.key) }),
    value: record.value,
    headers: record.headers as Record<string, string>,
    // Read by the partitioner when there is no key.
    metadata: record.partitionKey,
  };
}

/**
 * murmur2 of the key, positive as in Kafka's Java client and kafkajs; a record without a key is
 * hashed by its event id, so a retried request splits into partitions as the first attempt did.
 * The producer takes the result modulo the topic's partition count.
 */
function hashingPartitioner(kafka: PlatformaticKafka) {
  return (message: MessageToProduce<Buffer, Buffer, string, string>, key: Buffer | undefined): number =>
    kafka.compatibilityPartitioner(message, key ?? Buffer.from(String(message.metadata)));
}

type GetConnection = (broker: KafkaBrokerAddress | undefined, callback: (...args: unknown[]) => void) => void;

/** Makes `producer` connect to `connectTo(broker)` wherever it would connect to `broker`. */
function redirect<T extends object>(kafka: PlatformaticKafka, producer: T, connectTo: (broker: KafkaBrokerAddress) => KafkaBrokerAddress): T {
  const methods = producer as unknown as Record<symbol, GetConnection>;
  const getConnection = methods[kafka.kGetConnection]!;
  methods[kafka.kGetConnection] = function (this: unknown, broker, callback) {
    getConnection.call(this, broker ? { ...connectTo(broker) } : broker, callback);
  };
  return producer;
}

/** Kafka protocol errors that refuse the records, under the `type` the transport looks for. */
const recordRefusals = ['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'CORRUPT_MESSAGE', 'INVALID_TIMESTAMP'];

function withKafkaType(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const find = (error as { findBy?: (property: string, value: unknown) => unknown }).findBy;
  if (typeof find !== 'function') return error;
  const refusal = recordRefusals.find((id) => find.call(error, 'apiId', id));
  const canRetry = (error as { canRetry?: unknown }).canRetry;
  return Object.assign(new Error(error.message, { cause: error }), {
    ...(refusal === undefined ? {} : { type: refusal }),
    retriable: canRetry !== false,
  });
}
