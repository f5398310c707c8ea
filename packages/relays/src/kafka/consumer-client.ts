/**
 * The seam between the Kafka consumer helper and a Kafka client library, as the producer seam is
 * for the transport. The helper decodes records, runs transactions, retries, dead-letters and
 * decides what to commit; a client only joins the group, hands over batches of one partition's
 * records, commits the offsets it is told to, and moves a partition when asked. kafkajs and
 * @platformatic/kafka are the two implementations.
 */
import type { KafkaMessageLike } from './record-codec.ts';
import type { TopicPartition } from './consumer-options.ts';

/** How a client joins its consumer group, whichever the library. */
export interface GroupSettings {
  readonly groupId: string;
  readonly topics: readonly (string | RegExp)[];
  /** Where a partition without a committed offset starts: its first record, or new records only. */
  readonly fromBeginning: boolean;
  /** Partitions handled at the same time. */
  readonly concurrency: number;
  readonly sessionTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  /** Delays between attempts to start consuming again after the client gave up. */
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
}

/** Records of one partition, in offset order, fetched in one group generation. */
export interface PartitionBatch {
  readonly topic: string;
  readonly partition: number;
  readonly messages: readonly KafkaMessageLike[];
  /** True once the batch must not be handled further: the client is stopping, or the group moved on (a rebalance) since it was fetched. */
  isStale(): boolean;
  /**
   * Marks every record up to `lastOffset` done and commits the offset after it to Kafka for this
   * partition. Called only after the database transaction of those records committed.
   */
  commit(lastOffset: string): Promise<void>;
  /** Tells the group this member is alive while a batch takes long (retries, slow handlers). */
  heartbeat(): Promise<void>;
  /** Whether a failed commit means the member must rejoin its group: the batch ends by rethrowing it. */
  mustRejoin(error: unknown): boolean;
}

/** What a running client calls back. */
export interface ConsumerClientHandlers {
  /** The member (re)joined the group with these partitions; every batch of an older generation is stale from now on. */
  assigned(partitions: readonly TopicPartition[]): void;
  /** Applies a batch; the client fetches that partition's next records after it resolves. */
  batch(batch: PartitionBatch): Promise<void>;
  /** A failure the client recovers from by itself (it says whether it reconnects). */
  crashed(error: Error, restarting: boolean): void;
  /** Something failed that the helper should report. */
  error(error: Error): void;
}

/** A consumer group member. */
export interface ConsumerClient {
  /** Connects, joins the group, subscribes, and starts handing over batches. Rejects when the first connection fails. */
  start(handlers: ConsumerClientHandlers): Promise<void>;
  /** Consumption of the partition continues at `offset`; batches fetched before are dropped. */
  seek(tp: TopicPartition, offset: string): void;
  /** A producer for the dead-letter topic, reaching the same brokers the same way; closed by the caller. */
  deadLetterProducer(): DeadLetterProducer;
  /** Stops fetching, waits for the batch in progress, leaves the group. Idempotent. */
  close(): Promise<void>;
}

/** A record for the dead-letter topic: the original's key, value and headers, with tidings' reasons added. */
export interface DeadLetterRecord {
  readonly topic: string;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers: Readonly<Record<string, Buffer | string | (Buffer | string)[] | undefined>>;
}

/** Writes dead letters through an idempotent producer with acks=all. */
export interface DeadLetterProducer {
  /** Resolves once Kafka acknowledged the record; rejects otherwise (the next call reconnects). */
  send(record: DeadLetterRecord): Promise<void>;
  close(): Promise<void>;
}
