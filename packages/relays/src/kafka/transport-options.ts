import { ConfigError, type OutboxEvent } from '@tidings/outbox';
import { observer } from '@tidings/outbox/internal';
import { wholeOption } from '../shared/options.ts';
import type { KafkaSendError } from './errors.ts';
import { brokerList, type KafkaClientOptions } from './kafka-client.ts';
import { kafkajsProducer } from './kafkajs-producer.ts';
import { platformaticKafkaProducer, type PlatformaticKafkaProducerOptions } from './platformatic-producer.ts';
import type { KafkaProducerFactory } from './producer-client.ts';
import { resolveCloudEvents, type CloudEventsOptions, type ResolvedCloudEvents } from '../shared/cloud-events.ts';

/** Something happened to the transport's requests or clients; for logs and metrics. */
export type KafkaTransportEvent =
  /** A producer client was made: the first, or a replacement after a failed request. */
  | { readonly type: 'client-created'; readonly clients: number }
  /** A produce request failed or timed out: its records are reported `retry`, and its client is replaced. */
  | { readonly type: 'request-failed'; readonly records: number; readonly error: KafkaSendError };

/** A Kafka client library tidings can produce and consume with. */
export type KafkaLibrary = 'kafkajs' | 'platformatic';

export interface KafkaTransportOptions {
  /** The transport's name in relay logs and errors. Default `kafka`. */
  readonly name?: string;
  /** Bootstrap brokers of the built-in producer, e.g. `localhost:9092`. Needed unless `producer` is given. */
  readonly brokers?: string | readonly string[];
  /**
   * The client library of the built-in producer: `kafkajs` (default) or `platformatic`
   * (@platformatic/kafka). Both write the same records to the same partitions.
   */
  readonly library?: KafkaLibrary;
  /**
   * Client settings of the built-in producer: client id, TLS, SASL, timeouts, logging. With
   * `library: 'platformatic'`, `clientId`, `ssl`, `connectTimeoutMs` and `requestTimeoutMs` apply
   * (`sasl` in @platformatic/kafka's shape); the kafkajs-only `kafkajs` and `socketFactory` are refused.
   */
  readonly client?: Omit<KafkaClientOptions, 'brokers'>;
  /** Compression of the built-in producer's requests. Default `none`. */
  readonly compression?: 'none' | 'gzip';
  /**
   * The client seam: makes the producer clients the transport writes through. Default:
   * `kafkajsProducer({ kafka: { brokers, ...client }, compression })`, or with `library: 'platformatic'`
   * `platformaticKafkaProducer({ brokers, ...client, compression })`.
   */
  readonly producer?: KafkaProducerFactory;
  /**
   * The Kafka topic of each event. Default: the event's own topic.
   *
   * @example
   * topic: (event) => `prod.${event.topic}` // or: (event) => event.topic.split('.')[0]
   */
  readonly topic?: (event: OutboxEvent) => string;
  /**
   * Largest record (value, key and headers) the transport sends; a larger event is `failed` at once.
   * Default 1 048 000 bytes, within Kafka's default `max.message.bytes` (1 048 588).
   */
  readonly maxRecordBytes?: number;
  /**
   * Most record bytes in one produce request. A send normally goes out as one request, together
   * with the sends made while the previous request was in flight; beyond this it is split into
   * several requests, in order. Default 1 048 000 (so no partition's record batch can exceed the
   * default `max.message.bytes`).
   */
  readonly maxRequestBytes?: number;
  /**
   * A send whose records are not all acknowledged this long after it was called reports `retry`
   * for the rest; the request it waited for is abandoned and its client replaced. Default 30 000 ms.
   */
  readonly sendTimeoutMs?: number;
  /** Most events per send, declared to the relay. Default: no limit. */
  readonly maxBatchSize?: number;
  /** Hears client replacements and failed requests. What it throws is ignored: an observer never breaks delivery. */
  readonly onEvent?: (event: KafkaTransportEvent) => void;
  /** Also send every record as a CloudEvent 1.0 in binary content mode (`ce_*` headers). Default: off. */
  readonly cloudEvents?: CloudEventsOptions;
}

export interface ResolvedTransportOptions {
  readonly name: string;
  readonly producer: KafkaProducerFactory;
  readonly topic: (event: OutboxEvent) => string;
  readonly maxRecordBytes: number;
  readonly maxRequestBytes: number;
  readonly sendTimeoutMs: number;
  readonly maxBatchSize: number | undefined;
  readonly onEvent: (event: KafkaTransportEvent) => void;
  readonly cloudEvents: ResolvedCloudEvents | undefined;
}

export function resolveTransportOptions(options: KafkaTransportOptions): ResolvedTransportOptions {
  if (typeof options !== 'object' || options === null) throw new ConfigError('options', 'pass an object with at least { brokers } or { producer }');
  if (options.producer !== undefined && typeof options.producer !== 'function') {
    throw new ConfigError('producer', 'expected a function that makes a KafkaProducerClient, e.g. kafkajsProducer({ kafka: { brokers } })');
  }
  if (options.topic !== undefined && typeof options.topic !== 'function') throw new ConfigError('topic', 'expected a function (event) => Kafka topic name');
  const cloudEvents = resolveCloudEvents(options.cloudEvents);
  const compression = options.compression ?? 'none';
  if (options.library !== undefined && options.library !== 'kafkajs' && options.library !== 'platformatic') {
    throw new ConfigError('library', `expected "kafkajs" or "platformatic", got ${JSON.stringify(options.library)}`);
  }
  if (compression !== 'none' && compression !== 'gzip') throw new ConfigError('compression', `expected "none" or "gzip", got ${JSON.stringify(compression)}`);
  const producer =
    options.producer ??
    (() => {
      if (options.brokers === undefined) throw new ConfigError('brokers', 'give the bootstrap brokers (e.g. "localhost:9092"), or a producer client factory');
      return builtInProducer(options.library ?? 'kafkajs', brokerList(options.brokers), options.client, compression);
    })();
  const maxRecordBytes = wholeOption('maxRecordBytes', options.maxRecordBytes, 1_048_000);
  const maxRequestBytes = wholeOption('maxRequestBytes', options.maxRequestBytes, 1_048_000);
  if (maxRequestBytes < maxRecordBytes) throw new ConfigError('maxRequestBytes', `must be at least maxRecordBytes (${maxRecordBytes}), so every record fits in a request`);
  return {
    name: options.name ?? 'kafka',
    producer,
    topic: options.topic ?? ((event) => event.topic),
    maxRecordBytes,
    maxRequestBytes,
    sendTimeoutMs: wholeOption('sendTimeoutMs', options.sendTimeoutMs, 30_000),
    maxBatchSize: options.maxBatchSize === undefined ? undefined : wholeOption('maxBatchSize', options.maxBatchSize, 1),
    onEvent: observer(options.onEvent),
    cloudEvents,
  };
}


function builtInProducer(library: KafkaLibrary, brokers: string[], client: KafkaTransportOptions['client'], compression: 'none' | 'gzip'): KafkaProducerFactory {
  if (library === 'kafkajs') return kafkajsProducer({ kafka: { ...client, brokers }, compression });
  return platformaticKafkaProducer({ brokers, compression, ...platformaticClientSettings(client) });
}

/** The `client` settings that apply to @platformatic/kafka, in its shape; kafkajs-only settings are refused. */
export function platformaticClientSettings(client: Omit<KafkaClientOptions, 'brokers'> | undefined): Pick<PlatformaticKafkaProducerOptions, 'clientId' | 'ssl' | 'sasl' | 'connectTimeoutMs' | 'requestTimeoutMs'> {
  const { clientId, ssl, sasl, connectTimeoutMs, requestTimeoutMs, kafkajs, socketFactory } = client ?? {};
  if (kafkajs !== undefined || socketFactory !== undefined) {
    throw new ConfigError(kafkajs === undefined ? 'client.socketFactory' : 'client.kafkajs', 'is a kafkajs setting; remove it, or use library: "kafkajs"');
  }
  return {
    ...(clientId === undefined ? {} : { clientId }),
    ...(ssl === undefined ? {} : { ssl }),
    ...(sasl === undefined ? {} : { sasl: platformaticSasl(sasl) }),
    ...(connectTimeoutMs === undefined ? {} : { connectTimeoutMs }),
    ...(requestTimeoutMs === undefined ? {} : { requestTimeoutMs }),
  };
}

/** kafkajs's SASL settings (user name and password mechanisms) in @platformatic/kafka's shape. */
function platformaticSasl(sasl: NonNullable<KafkaClientOptions['sasl']>): NonNullable<PlatformaticKafkaProducerOptions['sasl']> {
  const mechanism = String(sasl.mechanism).toUpperCase();
  if ((mechanism !== 'PLAIN' && mechanism !== 'SCRAM-SHA-256' && mechanism !== 'SCRAM-SHA-512') || !('username' in sasl)) {
    throw new ConfigError('client.sasl', `with library: "platformatic", give { mechanism: "plain" | "scram-sha-256" | "scram-sha-512", username, password }; got mechanism ${JSON.stringify(sasl.mechanism)}`);
  }
  return { mechanism, username: sasl.username, password: sasl.password };
}
