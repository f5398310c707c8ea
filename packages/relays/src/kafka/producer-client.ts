/**
 * The seam between the Kafka transport and a Kafka client library. The transport encodes events,
 * batches, times out, replaces clients and reports outcomes; a client only writes records. kafkajs
 * is one implementation (`kafkajsProducer`); a librdkafka-based client can be another without
 * touching the transport or the relay engine.
 */

/** One encoded event, ready to be written to Kafka. */
export interface KafkaRecord {
  readonly topic: string;
  /** The Kafka message key: the event's ordering key, or null when it has none. */
  readonly key: string | null;
  /** The event's payload as UTF-8 JSON. */
  readonly value: Buffer;
  readonly headers: Readonly<Record<string, string>>;
  /**
   * What to hash to choose the partition of a record whose `key` is null: its event id. Choosing
   * by hash, never round-robin, means a retried request splits into partitions exactly as the first
   * attempt did, which idempotent producers need to deduplicate it.
   */
  readonly partitionKey: string;
}

/**
 * A producer connection to Kafka, as the transport uses it.
 *
 * @example
 * // A client that only logs, e.g. for a dry run:
 * const dryRun: KafkaProducerFactory = () => ({
 *   async produce(records) { for (const r of records) console.log(r.topic, r.key, r.value.toString()); },
 *   async close() {},
 * });
 * const transport = kafkaTransport({ producer: dryRun });
 */
export interface KafkaProducerClient {
  /**
   * Writes `records` with acks=all through an idempotent producer, in order per partition, in as
   * few requests as the client allows, and resolves once Kafka acknowledged every one. Rejects if
   * any may not be acknowledged; some records may have been written anyway. `signal` aborts when the
   * transport stops waiting; the client may stop retrying then, and is never used again.
   */
  produce(records: readonly KafkaRecord[], signal: AbortSignal): Promise<void>;
  /** Disconnects. Idempotent; the transport calls it once it no longer needs the client. */
  close(): Promise<void>;
}

/**
 * Makes producer clients. The transport makes the first one on its first send and a new one after
 * any failed request: a client whose last request failed may hold uncertain state (kafkajs
 * rolls sequence numbers back after a timeout, so a later batch could be taken for a duplicate),
 * so it is never reused.
 */
export type KafkaProducerFactory = () => KafkaProducerClient;
