import type { Consumer, Message, MessagesStream, Producer, SASLOptions } from '@platformatic/kafka';
import { ConfigError } from '@tidings/outbox';
import type { ConnectionOptions } from 'node:tls';
import { asError, Backoff, pause } from '../shared/backoff.ts';
import type { ConsumerClient, ConsumerClientHandlers, DeadLetterProducer, DeadLetterRecord, GroupSettings, PartitionBatch } from './consumer-client.ts';
import type { TopicPartition } from './consumer-options.ts';
import { platformaticKafka, type KafkaBrokerAddress } from './platformatic-producer.ts';
import type { KafkaMessageLike } from './record-codec.ts';

/** How the @platformatic/kafka consumer client reaches the brokers and joins its group. */
export interface PlatformaticConsumerSettings extends GroupSettings {
  readonly brokers: readonly string[];
  readonly clientId?: string;
  readonly ssl?: boolean | ConnectionOptions;
  readonly sasl?: SASLOptions;
  readonly connectTimeoutMs?: number;
  readonly requestTimeoutMs?: number;
  readonly connectTo?: (broker: KafkaBrokerAddress) => KafkaBrokerAddress;
}

type Received = Message<Buffer, Buffer, string, Buffer>;

/** Records received but not yet handed over, per partition, before the stream pauses. */
const bufferedLimit = 2_000;

/**
 * The consumer seam on @platformatic/kafka. Its consumer yields one stream of records of every
 * assigned partition; this client queues them per partition and hands each partition's queue over
 * as one batch, at most `concurrency` partitions at a time, one batch per partition at a time.
 * Records are read with read_committed isolation and nothing is committed automatically: an
 * offset is committed when the helper says its transaction committed.
 *
 * The group's generation is tracked as an epoch: a rebalance, a join, a seek or a failed stream
 * starts a new epoch, drops every queued record, and opens a new stream, which starts at the
 * group's committed offsets. Batches of an older epoch are stale: the helper stops after its
 * current transaction, and their offsets are not committed. A seek commits the sought offset for
 * the group before the new stream opens.
 */
export function platformaticConsumerClient(settings: PlatformaticConsumerSettings): ConsumerClient {
  return new PlatformaticConsumerClient(settings);
}

class PlatformaticConsumerClient implements ConsumerClient {
  readonly #settings: PlatformaticConsumerSettings;
  readonly #stopping = new AbortController();
  #consumer: Consumer<Buffer, Buffer, string, Buffer> | undefined;
  #handlers: ConsumerClientHandlers | undefined;
  #stream: MessagesStream<Buffer, Buffer, string, Buffer> | undefined;
  #epoch = 0;
  /** The topic names consumed: the names given, and those matching a pattern at start. */
  #topics: readonly string[] = [];
  readonly #queues = new Map<string, Received[]>();
  #queued = 0;
  readonly #busy = new Set<string>();
  readonly #running = new Set<Promise<void>>();
  readonly #seeks = new Map<string, TopicPartition & { offset: string }>();
  #opening: Promise<void> = Promise.resolve();
  #reopenWanted = false;
  #pumpScheduled = false;
  /** The first stream is open: from now on each join opens a new one. */
  #started = false;
  readonly #failures: Backoff;
  #closing: Promise<void> | undefined;

  constructor(settings: PlatformaticConsumerSettings) {
    this.#settings = settings;
    this.#failures = new Backoff(settings.minDelayMs, settings.maxDelayMs);
  }

  async start(handlers: ConsumerClientHandlers): Promise<void> {
    this.#handlers = handlers;
    const kafka = platformaticKafka();
    const settings = this.#settings;
    this.#topics = await topicNames(settings);
    if (this.#topics.length === 0) throw new ConfigError('topics', `no topic matches ${settings.topics.map(String).join(', ')}`);
    const consumer = new kafka.Consumer<Buffer, Buffer, string, Buffer>({
      ...connection(settings),
      groupId: settings.groupId,
      sessionTimeout: settings.sessionTimeoutMs,
      heartbeatInterval: settings.heartbeatIntervalMs,
      rebalanceTimeout: Math.max(settings.sessionTimeoutMs, 10_000),
      autocommit: false,
      isolationLevel: kafka.FetchIsolationLevels.READ_COMMITTED,
      maxWaitTime: 500,
      retries: 3,
      retryDelay: 200,
      deserializers: { headerKey: kafka.stringDeserializer },
    });
    if (settings.connectTo) redirectPools(consumer, settings.connectTo);
    this.#consumer = consumer;
    // A reference of our own to the topics: closing one stream before opening the next does not
    // leave the group's subscription empty, which would make the member rejoin.
    consumer.topics.trackAll(...this.#topics);
    consumer.on('consumer:group:rebalance', () => this.#newEpoch());
    consumer.on('consumer:group:leave', () => this.#newEpoch());
    consumer.on('consumer:group:join', () => {
      const partitions = (consumer.assignments ?? []).flatMap(({ topic, partitions: ids }) => ids.map((partition) => ({ topic, partition })));
      this.#newEpoch();
      handlers.assigned(partitions);
      // A stream opened before this join may still bring records fetched for the old generation.
      if (this.#started) this.#reopen();
    });
    // Seeks asked for while the first stream opens (on the first assignment) wait for it.
    this.#opening = this.#open();
    try {
      await this.#opening;
      this.#started = true;
    } catch (error) {
      this.#consumer = undefined;
      await consumer.close(true).catch(() => {});
      throw error;
    }
  }

  seek(tp: TopicPartition, offset: string): void {
    this.#seeks.set(`${tp.topic}:${tp.partition}`, { ...tp, offset });
    this.#newEpoch();
    this.#reopen();
  }

  deadLetterProducer(): DeadLetterProducer {
    return new PlatformaticDeadLetterProducer(this.#settings);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stopping.abort();
      this.#newEpoch();
      await this.#opening.catch(() => {});
      await this.#stream?.close().catch(() => {});
      this.#stream = undefined;
      // Let the batch in progress end (after its current transaction) before leaving the group.
      await Promise.allSettled([...this.#running]);
      await this.#consumer?.close(true).catch(() => {});
    })();
    return this.#closing;
  }

  /** Everything queued or handed over so far belongs to the past. */
  #newEpoch(): void {
    this.#epoch++;
    this.#queues.clear();
    this.#queued = 0;
  }

  /** Opens a new stream after the one open now, once; seeks requested meanwhile are included. */
  #reopen(): void {
    if (this.#stopping.signal.aborted || this.#reopenWanted) return;
    this.#reopenWanted = true;
    this.#opening = this.#opening
      .catch(() => {})
      .then(async () => {
        this.#reopenWanted = false;
        const old = this.#stream;
        this.#stream = undefined;
        await old?.close().catch(() => {});
        while (!this.#stopping.signal.aborted && this.#consumer) {
          try {
            await this.#open();
            return;
          } catch (error) {
            this.#handlers!.error(asError(error));
            await pause(this.#failures.next(), this.#stopping.signal);
          }
        }
      });
  }

  /** Commits the sought offsets for the group, then opens a stream that starts at the committed offsets. */
  async #open(): Promise<void> {
    const consumer = this.#consumer!;
    const seeks = [...this.#seeks.values()];
    if (seeks.length > 0) {
      await consumer.commit({ offsets: seeks.map(({ topic, partition, offset }) => ({ topic, partition, offset: BigInt(offset), leaderEpoch: -1 })) });
      for (const seek of seeks) if (this.#seeks.get(`${seek.topic}:${seek.partition}`) === seek) this.#seeks.delete(`${seek.topic}:${seek.partition}`);
    }
    if (this.#stopping.signal.aborted) return;
    const stream = await consumer.consume({
      topics: [...this.#topics],
      mode: 'committed',
      fallbackMode: this.#settings.fromBeginning ? 'earliest' : 'latest',
      autocommit: false,
      isolationLevel: platformaticKafka().FetchIsolationLevels.READ_COMMITTED,
      maxWaitTime: 500,
    });
    if (this.#stopping.signal.aborted) {
      await stream.close().catch(() => {});
      return;
    }
    this.#stream = stream;
    // Records reaching this stream after a new epoch began are dropped: the next stream reads them again.
    const opened = this.#epoch;
    stream.on('data', (message: Received) => {
      if (this.#epoch !== opened || this.#stream !== stream) return;
      this.#failures.reset();
      this.#enqueue(message);
    });
    stream.on('error', (error: Error) => {
      if (this.#stream !== stream || this.#stopping.signal.aborted) return;
      this.#handlers!.crashed(error, true);
      this.#newEpoch();
      void pause(this.#failures.next(), this.#stopping.signal).then(() => this.#reopen());
    });
  }

  #enqueue(message: Received): void {
    const key = `${message.topic}:${message.partition}`;
    let queue = this.#queues.get(key);
    if (!queue) this.#queues.set(key, (queue = []));
    queue.push(message);
    if (++this.#queued >= bufferedLimit) this.#stream?.pause();
    // The stream emits a fetch response's records one by one, synchronously: hand them over once
    // all are queued, so that a partition's batch is what one fetch brought, as with kafkajs.
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  /** Hands queued partitions over, up to `concurrency` at a time, each partition's records in order. */
  #pump(): void {
    for (const [key, queue] of this.#queues) {
      if (this.#running.size >= this.#settings.concurrency) return;
      if (this.#busy.has(key) || queue.length === 0) continue;
      this.#queues.delete(key);
      this.#queued -= queue.length;
      if (this.#queued < bufferedLimit) this.#stream?.resume();
      this.#busy.add(key);
      const batch = this.#batch(queue, this.#epoch);
      const running: Promise<void> = this.#handlers!
        .batch(batch)
        .catch((error: unknown) => {
          // The batch ended on an error (e.g. a commit refused by a rebalancing group): what
          // follows is read again from the committed offsets.
          if (batch.isStale()) return;
          this.#handlers!.error(asError(error));
          this.#newEpoch();
          this.#reopen();
        })
        .finally(() => {
          this.#busy.delete(key);
          this.#running.delete(running);
          if (!this.#stopping.signal.aborted) this.#pump();
        });
      this.#running.add(running);
    }
  }

  #batch(messages: readonly Received[], epoch: number): PartitionBatch {
    const { topic, partition } = messages[0]!;
    const consumer = this.#consumer!;
    const isStale = (): boolean => this.#stopping.signal.aborted || this.#epoch !== epoch;
    const leaderEpoch = messages.at(-1)!.leaderEpoch;
    return {
      topic,
      partition,
      messages: messages.map(toMessageLike),
      isStale,
      async commit(lastOffset) {
        // A batch of a past generation commits nothing: the partition may be another member's now.
        if (isStale()) return;
        await consumer.commit({ offsets: [{ topic, partition, offset: BigInt(lastOffset) + 1n, leaderEpoch }] });
      },
      // The client heartbeats on its own timer, whatever the handler does.
      heartbeat: async () => {},
      mustRejoin: () => false,
    };
  }
}

function toMessageLike(message: Received): KafkaMessageLike {
  return {
    key: message.key ?? null,
    value: message.value ?? null,
    offset: String(message.offset),
    timestamp: String(message.timestamp),
    headers: Object.fromEntries(message.headers),
  };
}

/** How every client of this consumer reaches the brokers. */
function connection(settings: PlatformaticConsumerSettings) {
  const tls = settings.ssl === true ? {} : settings.ssl === false ? undefined : settings.ssl;
  return {
    clientId: settings.clientId ?? 'tidings',
    bootstrapBrokers: settings.brokers.map(address),
    connectTimeout: settings.connectTimeoutMs ?? 3_000,
    requestTimeout: settings.requestTimeoutMs ?? 30_000,
    ...(tls === undefined ? {} : { tls }),
    ...(settings.sasl === undefined ? {} : { sasl: settings.sasl }),
  };
}

/** The topics to consume: names as given, and for each pattern the topics that match it now. */
async function topicNames(settings: PlatformaticConsumerSettings): Promise<string[]> {
  const names = settings.topics.filter((topic): topic is string => typeof topic === 'string');
  const patterns = settings.topics.filter((topic): topic is RegExp => topic instanceof RegExp);
  if (patterns.length === 0) return names;
  const admin = new (platformaticKafka().Admin)(connection(settings));
  if (settings.connectTo) redirectPools(admin, settings.connectTo);
  try {
    const existing = await admin.listTopics();
    return [...new Set([...names, ...existing.filter((topic) => patterns.some((pattern) => new RegExp(pattern.source, pattern.flags.replace('g', '')).test(topic)))])];
  } finally {
    await admin.close().catch(() => {});
  }
}

function address(broker: string): KafkaBrokerAddress {
  const at = broker.lastIndexOf(':');
  return at < 0 ? { host: broker, port: 9092 } : { host: broker.slice(0, at), port: Number(broker.slice(at + 1)) };
}

type PoolGet = (broker: KafkaBrokerAddress, callback: (...args: unknown[]) => void) => void;
interface Pool {
  get: PoolGet;
}

/** The library's symbol described `description`, found on `object` or its prototypes. */
function symbolOf(object: object, description: string): symbol | undefined {
  for (let at: object | null = object; at; at = Object.getPrototypeOf(at)) {
    const found = Object.getOwnPropertySymbols(at).find((symbol) => symbol.description === description);
    if (found) return found;
  }
  return undefined;
}

/**
 * Makes every connection of `client` (its own pool, and the pool of each stream it creates) go to
 * `connectTo(broker)` instead of `broker`.
 */
function redirectPools(client: object, connectTo: (broker: KafkaBrokerAddress) => KafkaBrokerAddress): void {
  const connections = symbolOf(client, 'plt.kafka.base.connections');
  const createPool = symbolOf(client, 'plt.kafka.base.createConnectionPool');
  if (!connections || !createPool) throw new Error('this version of @platformatic/kafka cannot redirect connections (connectTo)');
  const wrap = (pool: Pool): Pool => {
    const get = pool.get.bind(pool);
    pool.get = (broker, callback) => get(broker ? { ...connectTo(broker) } : broker, callback);
    return pool;
  };
  const fields = client as Record<symbol, unknown>;
  wrap(fields[connections] as Pool);
  const create = (fields[createPool] as (context?: unknown) => Pool).bind(client);
  fields[createPool] = (context?: unknown) => wrap(create(context));
}

/** Dead letters through an idempotent @platformatic/kafka producer with acks=all. */
class PlatformaticDeadLetterProducer implements DeadLetterProducer {
  readonly #settings: PlatformaticConsumerSettings;
  #producer: Producer<Buffer, Buffer, string, Buffer> | undefined;

  constructor(settings: PlatformaticConsumerSettings) {
    this.#settings = settings;
  }

  async send(record: DeadLetterRecord): Promise<void> {
    const kafka = platformaticKafka();
    const settings = this.#settings;
    let producer = this.#producer;
    if (!producer) {
      producer = new kafka.Producer<Buffer, Buffer, string, Buffer>({
        ...connection(settings),
        idempotent: true,
        acks: kafka.ProduceAcks.ALL,
        retries: 3,
        retryDelay: 100,
        serializers: { headerKey: kafka.stringSerializer },
      });
      if (settings.connectTo) redirectPools(producer, settings.connectTo);
      this.#producer = producer;
    }
    const headers = new Map<string, Buffer>();
    for (const [name, value] of Object.entries(record.headers)) {
      const first = Array.isArray(value) ? value[0] : value;
      if (first !== undefined) headers.set(name, Buffer.isBuffer(first) ? first : Buffer.from(first));
    }
    try {
      await producer.send({
        messages: [{ topic: record.topic, ...(record.key === null ? {} : { key: record.key }), ...(record.value === null ? {} : { value: record.value }), headers }],
      });
    } catch (failure) {
      this.#producer = undefined;
      void producer.close(true).catch(() => {});
      throw failure;
    }
  }

  async close(): Promise<void> {
    const producer = this.#producer;
    this.#producer = undefined;
    await producer?.close(true).catch(() => {});
  }
}
