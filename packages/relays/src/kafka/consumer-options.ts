import { ConfigError } from '@tidings/outbox';
import type { Kafka } from 'kafkajs';
import type { ConsumerClient, GroupSettings } from './consumer-client.ts';
import { brokerList, type KafkaClientOptions } from './kafka-client.ts';
import { kafkajsConsumerClient } from './kafkajs-consumer.ts';
import { platformaticConsumerClient } from './platformatic-consumer.ts';
import type { KafkaBrokerAddress } from './platformatic-producer.ts';
import { platformaticClientSettings, type KafkaLibrary } from './transport-options.ts';
import { resolveCommon, resolveRetry, type ConsumerOptions, type KafkaDelivery, type ResolvedCommon, type RetryOptions } from '../shared/consumer.ts';
import type { TransactionSource } from '../shared/transaction-source.ts';
import { wholeOption } from '../shared/options.ts';

/**
 * How the consumer helper makes effects exactly once.
 * - `inbox`: each event's id is marked in the inbox in the transaction of its effects, and a
 *   delivery of an id already marked is skipped. Survives duplicates in the topic itself, which an
 *   at-least-once producer (such as a relay that resent a batch) writes.
 * - `checkpoint`: the next offset of each partition is stored in the consumer's database in the
 *   transaction of the effects (compare-and-set), and consumption resumes from it. No row per
 *   event, but each *record* is applied once: a record written twice is applied twice.
 */
export type KafkaConsumerMode = 'inbox' | 'checkpoint';

/** A Kafka topic and partition. */
export interface TopicPartition {
  readonly topic: string;
  readonly partition: number;
}

/** Something the consumer did; for logs, metrics and tests. */
export type KafkaConsumerEvent =
  | { readonly type: 'assigned'; readonly partitions: readonly TopicPartition[] }
  /** Consumption of the partition moved to the offset stored in the database (mode `checkpoint`). */
  | { readonly type: 'resumed'; readonly topic: string; readonly partition: number; readonly offset: string }
  /** A database transaction with the effects of these records committed; the Kafka offset commit follows. */
  | {
      readonly type: 'committed';
      readonly topic: string;
      readonly partition: number;
      readonly firstOffset: string;
      readonly lastOffset: string;
      readonly records: number;
      /** Events whose handler ran; the others were duplicates the inbox skipped. */
      readonly applied: number;
    }
  /** The handler failed; the record is tried again after `delayMs`, its partition waiting. */
  | { readonly type: 'retry-scheduled'; readonly topic: string; readonly partition: number; readonly offset: string; readonly attempt: number; readonly delayMs: number; readonly error: Error }
  | { readonly type: 'dead-lettered'; readonly topic: string; readonly partition: number; readonly offset: string; readonly eventId: string | null; readonly error: Error }
  /** Something failed that is not the handler's doing (database, offset commit, an unreadable record without a dead-letter topic); it is retried. */
  | { readonly type: 'error'; readonly topic?: string; readonly partition?: number; readonly error: Error }
  /** The client library stopped consuming; `restarting` says whether it starts again by itself. */
  | { readonly type: 'crashed'; readonly error: Error; readonly restarting: boolean };

export interface ConsumeKafkaOptions<Source extends TransactionSource> extends ConsumerOptions<Source, KafkaDelivery, KafkaConsumerEvent> {
  /** Bootstrap brokers, e.g. `localhost:9092`. Needed unless `kafka` is given. */
  readonly brokers?: string | readonly string[];
  /**
   * The client library: `kafkajs` (default) or `platformatic` (@platformatic/kafka). Both apply
   * the same records the same way; see the README for what differs.
   */
  readonly library?: KafkaLibrary;
  /**
   * Client settings: client id, TLS, SASL, timeouts, logging. With `library: 'platformatic'`,
   * `clientId`, `ssl`, `sasl` (user name and password mechanisms), `connectTimeoutMs` and
   * `requestTimeoutMs` apply; the kafkajs-only `kafkajs` and `socketFactory` are refused.
   */
  readonly client?: Omit<KafkaClientOptions, 'brokers'>;
  /** A kafkajs client of your own, instead of `brokers` and `client` (library `kafkajs` only). */
  readonly kafka?: Kafka;
  /**
   * With `library: 'platformatic'`: where to connect for a broker the cluster's metadata names
   * (e.g. a proxy), as `platformaticKafkaProducer`'s option of the same name. Default: as named.
   */
  readonly connectTo?: (broker: KafkaBrokerAddress) => KafkaBrokerAddress;
  /** Topics to consume: names, or patterns matched against the topics that exist at start. */
  readonly topics: readonly (string | RegExp)[];
  /** The Kafka consumer group. Default: the `consumer` name. */
  readonly groupId?: string;
  /** Default `inbox`; see {@link KafkaConsumerMode}. */
  readonly mode?: KafkaConsumerMode;
  /** Where a partition without a committed offset (or checkpoint) starts: its first record (default) or new records only. */
  readonly fromBeginning?: boolean;
  /** Most records applied in one database transaction. Default 100. */
  readonly batchSize?: number;
  /** Partitions handled at the same time, each in its own transaction. Default 1. */
  readonly partitionsConsumedConcurrently?: number;
  /**
   * A failing handler is retried, its partition waiting (so a key's events stay in order), after
   * `minDelayMs` (default 200) doubling up to `maxDelayMs` (default 30 000). With `deadLetterTopic`,
   * after `attempts` runs (default 5) the record is copied there and passed over; without one,
   * retries never stop.
   */
  readonly retry?: RetryOptions;
  /**
   * Where records go that cannot be applied: unreadable ones at once, failing ones after
   * `retry.attempts` runs, with the reason in `tidings_*` headers. Without it, their partition waits.
   */
  readonly deadLetterTopic?: string;
  /** A member that misses heartbeats this long leaves the group and its partitions move. Default 30 000 ms (at least 6 000 with Kafka's defaults). */
  readonly sessionTimeoutMs?: number;
  /** Default 3 000 ms. */
  readonly heartbeatIntervalMs?: number;
}

export interface ResolvedConsumerOptions<Source extends TransactionSource> extends ResolvedCommon<Source, KafkaDelivery, KafkaConsumerEvent> {
  /** Makes the group member, with the library chosen. */
  readonly createClient: () => ConsumerClient;
  readonly topics: readonly (string | RegExp)[];
  readonly groupId: string;
  readonly mode: KafkaConsumerMode;
  readonly fromBeginning: boolean;
  readonly batchSize: number;
  readonly concurrency: number;
  readonly attempts: number;
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
  readonly deadLetterTopic: string | undefined;
  readonly sessionTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
}

export function resolveConsumerOptions<Source extends TransactionSource>(options: ConsumeKafkaOptions<Source>): ResolvedConsumerOptions<Source> {
  const common = resolveCommon(options, 'brokers, topics, consumer, database and handler');
  if (!Array.isArray(options.topics) || options.topics.length === 0 || options.topics.some((t) => typeof t !== 'string' && !(t instanceof RegExp))) {
    throw new ConfigError('topics', 'pass a non-empty list of topic names or RegExps');
  }
  const mode = options.mode ?? 'inbox';
  if (mode !== 'inbox' && mode !== 'checkpoint') throw new ConfigError('mode', `expected "inbox" or "checkpoint", got ${JSON.stringify(mode)}`);
  const library = options.library ?? 'kafkajs';
  if (library !== 'kafkajs' && library !== 'platformatic') throw new ConfigError('library', `expected "kafkajs" or "platformatic", got ${JSON.stringify(library)}`);
  if (options.connectTo !== undefined && (library !== 'platformatic' || typeof options.connectTo !== 'function')) {
    throw new ConfigError('connectTo', library === 'platformatic' ? 'expected a function (broker) => { host, port }' : 'applies to library: "platformatic" only; with kafkajs, give client.socketFactory');
  }
  if (library === 'platformatic' && options.kafka !== undefined) throw new ConfigError('kafka', 'is a kafkajs client; with library: "platformatic", give brokers (and client) instead');
  const retry = resolveRetry(options.retry, { attempts: 5, minDelayMs: 200, maxDelayMs: 30_000 });
  const sessionTimeoutMs = wholeOption('sessionTimeoutMs', options.sessionTimeoutMs, 30_000);
  const heartbeatIntervalMs = wholeOption('heartbeatIntervalMs', options.heartbeatIntervalMs, Math.min(3_000, Math.floor(sessionTimeoutMs / 3)));
  if (heartbeatIntervalMs * 2 > sessionTimeoutMs) throw new ConfigError('heartbeatIntervalMs', `must be at most half of sessionTimeoutMs (${sessionTimeoutMs})`);
  if (options.deadLetterTopic !== undefined && !/^[A-Za-z0-9._-]{1,249}$/.test(options.deadLetterTopic)) {
    throw new ConfigError('deadLetterTopic', `expected a Kafka topic name, got ${JSON.stringify(options.deadLetterTopic)}`);
  }
  const topics = [...options.topics];
  const groupId = options.groupId ?? options.consumer;
  const fromBeginning = options.fromBeginning ?? true;
  const concurrency = wholeOption('partitionsConsumedConcurrently', options.partitionsConsumedConcurrently, 1);
  const group = { groupId, topics, fromBeginning, concurrency, sessionTimeoutMs, heartbeatIntervalMs, minDelayMs: retry.minDelayMs, maxDelayMs: retry.maxDelayMs };
  return {
    ...common,
    createClient: library === 'kafkajs' ? kafkajsClient(options, group) : platformaticClient(options, group),
    topics,
    groupId,
    mode,
    fromBeginning,
    batchSize: wholeOption('batchSize', options.batchSize, 100),
    concurrency,
    ...retry,
    deadLetterTopic: options.deadLetterTopic,
    sessionTimeoutMs,
    heartbeatIntervalMs,
  };
}


function kafkajsClient<Source extends TransactionSource>(options: ConsumeKafkaOptions<Source>, group: GroupSettings): () => ConsumerClient {
  const kafka = options.kafka ?? { ...options.client, brokers: brokerList(options.brokers) };
  return () => kafkajsConsumerClient({ ...group, kafka });
}

function platformaticClient<Source extends TransactionSource>(options: ConsumeKafkaOptions<Source>, group: GroupSettings): () => ConsumerClient {
  const brokers = brokerList(options.brokers);
  const settings = {
    ...group,
    brokers,
    ...platformaticClientSettings(options.client),
    ...(options.connectTo === undefined ? {} : { connectTo: options.connectTo }),
  };
  return () => platformaticConsumerClient(settings);
}
