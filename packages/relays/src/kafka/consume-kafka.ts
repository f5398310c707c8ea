import { asError } from '../shared/backoff.ts';
import { BatchProcessor } from './batch-processor.ts';
import type { ConsumerClient } from './consumer-client.ts';
import { resolveConsumerOptions, type ConsumeKafkaOptions, type ResolvedConsumerOptions, type TopicPartition } from './consumer-options.ts';
import { DeadLetterWriter } from './dead-letter-writer.ts';
import type { TransactionSource } from '../shared/transaction-source.ts';
import { lifecycle, type Consumer as RunningConsumer } from '../shared/consumer.ts';

/** A running consumer: `close()` stops fetching, lets the transaction in progress commit (and its offset), then leaves the group. */
export interface KafkaConsumer extends RunningConsumer {
  readonly groupId: string;
}

/**
 * Consumes Kafka topics in a consumer group and applies each event exactly once, in offset order
 * per partition (so in order per key), inside the consumer's own database transactions.
 *
 * Records are applied in transactions of up to `batchSize`; Kafka's offset is committed only after
 * the transaction committed, so a crash between the two means a redelivery, which is skipped:
 * - mode `inbox` (default): each event id is marked in the inbox in the same transaction; a record
 *   whose id is marked is skipped. This also removes the duplicates an at-least-once producer
 *   writes into the topic (a relay that resent a batch after a failure).
 * - mode `checkpoint`: the partition's next offset is stored in the inbox's checkpoint table in the
 *   same transaction, compare-and-set against the offset the worker resumed from, so a member that
 *   lost its partition cannot apply it twice. On every assignment consumption moves to the stored
 *   offset (seek), whatever Kafka's committed offset says. No row per event, but a record is
 *   applied once per *record*: use it for topics without duplicates, or handlers that are
 *   idempotent per event anyway.
 *
 * A handler that throws is retried after a growing delay, its partition waiting (order is kept);
 * with `deadLetterTopic`, after `retry.attempts` runs the record is copied there and passed over.
 * Failures of the database do not use up attempts. The client reconnects after a broker restart; a
 * consumer that kafkajs gives up on is started again.
 *
 * `library` chooses the client: kafkajs (default) or @platformatic/kafka (`'platformatic'`), which
 * reads with read_committed isolation.
 *
 * @example
 * import { consumeKafka } from '@tidings/relays/kafka';
 *
 * const consumer = await consumeKafka({
 *   brokers: process.env.KAFKA_BROKERS!,
 *   topics: ['orders.created'],
 *   consumer: 'billing',
 *   database: db, // kysely: the handler gets a Transaction
 *   handler: async (trx, event) => {
 *     await trx.insertInto('invoices').values({ order_id: (event.payload as { id: string }).id }).execute();
 *   },
 * });
 * // on shutdown
 * await consumer.close();
 */
export async function consumeKafka<Source extends TransactionSource>(options: ConsumeKafkaOptions<Source>): Promise<KafkaConsumer> {
  const consumer = new Consumer(resolveConsumerOptions(options) as unknown as ResolvedConsumerOptions<TransactionSource>);
  await consumer.start();
  return consumer;
}

class Consumer implements KafkaConsumer {
  readonly groupId: string;
  readonly #options: ResolvedConsumerOptions<TransactionSource>;
  readonly #client: ConsumerClient;
  readonly #stopping = new AbortController();
  readonly #deadLetters: DeadLetterWriter | undefined;
  readonly #processor: BatchProcessor<TransactionSource>;
  #closing: Promise<void> | undefined;
  readonly #life = lifecycle();
  readonly done = this.#life.done;

  constructor(options: ResolvedConsumerOptions<TransactionSource>) {
    this.#options = options;
    this.groupId = options.groupId;
    this.#client = options.createClient();
    this.#deadLetters = options.deadLetterTopic === undefined ? undefined : new DeadLetterWriter(this.#client.deadLetterProducer(), options.deadLetterTopic);
    this.#processor = new BatchProcessor(options, (tp, offset) => this.#seek(tp, offset), this.#deadLetters, this.#stopping.signal);
  }

  start(): Promise<void> {
    const { onEvent } = this.#options;
    return this.#client.start({
      assigned: (partitions) => {
        onEvent({ type: 'assigned', partitions });
        this.#processor.assigned(partitions);
      },
      batch: (batch) => this.#processor.process(batch),
      crashed: (error, restarting) => onEvent({ type: 'crashed', error, restarting }),
      error: (error) => onEvent({ type: 'error', error }),
    });
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stopping.abort();
      // The client waits for the batch in progress; the processor stops after its current transaction.
      await this.#client.close();
      await this.#deadLetters?.close();
      this.#life.stopped();
    })();
    return this.#closing;
  }

  #seek(tp: TopicPartition, offset: string): void {
    try {
      this.#client.seek(tp, offset);
    } catch (error) {
      this.#options.onEvent({ type: 'error', ...tp, error: asError(error) });
    }
  }
}
