import type { Consumer, EachBatchPayload, Kafka, Producer } from 'kafkajs';
import { asError, Backoff, pause } from '../shared/backoff.ts';
import type { ConsumerClient, ConsumerClientHandlers, DeadLetterProducer, DeadLetterRecord, GroupSettings, PartitionBatch } from './consumer-client.ts';
import type { TopicPartition } from './consumer-options.ts';
import { createKafkaClient, kafkajs, type KafkaClientOptions } from './kafka-client.ts';

/** How the kafkajs consumer client joins its group. */
export interface KafkajsConsumerSettings extends GroupSettings {
  /** A kafkajs client of the caller's, or the settings to make one. */
  readonly kafka: Kafka | KafkaClientOptions;
}

/**
 * The consumer seam on kafkajs: `eachBatch` without auto-resolve or auto-commit, offsets resolved
 * and committed only when the helper says so. kafkajs reconnects after retriable failures; a
 * consumer it gives up on is replaced by a new one, after a delay.
 */
export function kafkajsConsumerClient(settings: KafkajsConsumerSettings): ConsumerClient {
  return new KafkajsConsumerClient(settings);
}

class KafkajsConsumerClient implements ConsumerClient {
  readonly #settings: KafkajsConsumerSettings;
  readonly #kafka: Kafka;
  readonly #stopping = new AbortController();
  #handlers: ConsumerClientHandlers | undefined;
  #consumer: Consumer | undefined;
  #restarting: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(settings: KafkajsConsumerSettings) {
    this.#settings = settings;
    const own = typeof (settings.kafka as Kafka).consumer !== 'function';
    this.#kafka = own ? createKafkaClient(settings.kafka as KafkaClientOptions) : (settings.kafka as Kafka);
  }

  async start(handlers: ConsumerClientHandlers): Promise<void> {
    this.#handlers = handlers;
    const { groupId, sessionTimeoutMs, heartbeatIntervalMs, topics, fromBeginning, concurrency } = this.#settings;
    const consumer = this.#kafka.consumer({
      groupId,
      sessionTimeout: sessionTimeoutMs,
      heartbeatInterval: heartbeatIntervalMs,
      maxWaitTimeInMs: 500,
      retry: { retries: 5, initialRetryTime: 200, maxRetryTime: 5_000, restartOnFailure: async () => !this.#stopping.signal.aborted },
    });
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      const partitions: TopicPartition[] = Object.entries(payload.memberAssignment).flatMap(([topic, ids]) => ids.map((partition) => ({ topic, partition })));
      handlers.assigned(partitions);
    });
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      handlers.crashed(asError(payload.error), payload.restart && !this.#stopping.signal.aborted);
      // kafkajs restarts only after retriable failures; start a new consumer after the others.
      if (!payload.restart && !this.#stopping.signal.aborted && this.#consumer === consumer) this.#restart();
    });
    this.#consumer = consumer;
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [...topics], fromBeginning });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: concurrency,
        eachBatch: (payload) => handlers.batch(partitionBatch(payload)),
      });
    } catch (error) {
      if (this.#consumer === consumer) this.#consumer = undefined;
      await consumer.disconnect().catch(() => {});
      throw error;
    }
  }

  seek(tp: TopicPartition, offset: string): void {
    this.#consumer?.seek({ topic: tp.topic, partition: tp.partition, offset });
  }

  deadLetterProducer(): DeadLetterProducer {
    return new KafkajsDeadLetterProducer(this.#kafka);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stopping.abort();
      await this.#restarting;
      // kafkajs waits for the batch in progress; the helper stops after its current transaction.
      await this.#consumer?.disconnect().catch(() => {});
    })();
    return this.#closing;
  }

  #restart(): void {
    this.#restarting ??= (async () => {
      const old = this.#consumer;
      this.#consumer = undefined;
      await old?.disconnect().catch(() => {});
      const backoff = new Backoff(this.#settings.minDelayMs, this.#settings.maxDelayMs);
      while (!this.#stopping.signal.aborted) {
        await pause(backoff.next(), this.#stopping.signal);
        if (this.#stopping.signal.aborted) return;
        try {
          await this.start(this.#handlers!);
          return;
        } catch (error) {
          this.#handlers!.error(asError(error));
        }
      }
    })().finally(() => {
      this.#restarting = undefined;
    });
  }
}

function partitionBatch(payload: EachBatchPayload): PartitionBatch {
  const { batch } = payload;
  return {
    topic: batch.topic,
    partition: batch.partition,
    messages: batch.messages,
    isStale: () => !payload.isRunning() || payload.isStale(),
    async commit(lastOffset) {
      payload.resolveOffset(lastOffset);
      const offset = String(BigInt(lastOffset) + 1n);
      await payload.commitOffsetsIfNecessary({ topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset }] }] });
    },
    heartbeat: () => payload.heartbeat(),
    mustRejoin: isRebalancing,
  };
}

/** kafkajs's own test: the group is rebalancing and this member must rejoin. */
function isRebalancing(error: unknown): boolean {
  const type = (error as { type?: unknown } | null)?.type;
  return type === 'REBALANCE_IN_PROGRESS' || type === 'NOT_COORDINATOR_FOR_GROUP' || type === 'ILLEGAL_GENERATION';
}

class KafkajsDeadLetterProducer implements DeadLetterProducer {
  readonly #kafka: Kafka;
  #producer: Producer | undefined;
  #connecting: Promise<void> | undefined;

  constructor(kafka: Kafka) {
    this.#kafka = kafka;
  }

  async send(record: DeadLetterRecord): Promise<void> {
    const producer = (this.#producer ??= this.#kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: kafkajs().Partitioners.DefaultPartitioner,
      retry: { retries: 3 },
    }));
    try {
      await (this.#connecting ??= producer.connect());
      await producer.send({ topic: record.topic, acks: -1, messages: [{ key: record.key, value: record.value, headers: { ...record.headers } }] });
    } catch (failure) {
      this.#producer = undefined;
      this.#connecting = undefined;
      void producer.disconnect().catch(() => {});
      throw failure;
    }
  }

  async close(): Promise<void> {
    const producer = this.#producer;
    this.#producer = undefined;
    await producer?.disconnect().catch(() => {});
  }
}
