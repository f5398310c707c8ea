import type { Kafka, KafkaMessage, Producer } from 'kafkajs';
import { kafkajs } from './kafka-client.ts';
import { kafkaHeaders } from './record-codec.ts';

/** Why a record went to the dead-letter topic; carried in its `tidings_dead_letter_reason` header. */
export type KafkaDeadLetterReason = 'invalid-record' | 'handler-failed';

/**
 * Copies records the consumer helper cannot apply to the dead-letter topic: same key, value and
 * headers, plus the reason, the last error, where the record came from and how often it was tried.
 */
export class DeadLetterWriter {
  readonly #kafka: Kafka;
  readonly #topic: string;
  #producer: Producer | undefined;
  #connecting: Promise<void> | undefined;

  constructor(kafka: Kafka, topic: string) {
    this.#kafka = kafka;
    this.#topic = topic;
  }

  get topic(): string {
    return this.#topic;
  }

  /** Resolves once Kafka acknowledged the copy (acks=all); rejects otherwise, and the next call reconnects. */
  async write(from: { topic: string; partition: number }, message: KafkaMessage, reason: KafkaDeadLetterReason, error: Error, attempts: number): Promise<void> {
    const producer = (this.#producer ??= this.#kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: kafkajs().Partitioners.DefaultPartitioner,
      retry: { retries: 3 },
    }));
    try {
      await (this.#connecting ??= producer.connect());
      await producer.send({
        topic: this.#topic,
        acks: -1,
        messages: [
          {
            key: message.key,
            value: message.value,
            headers: {
              ...message.headers,
              [kafkaHeaders.deadLetterReason]: reason,
              [kafkaHeaders.error]: `${error.name}: ${error.message}`.slice(0, 4_000),
              [kafkaHeaders.source]: `${from.topic}/${from.partition}@${message.offset}`,
              [kafkaHeaders.attempts]: String(attempts),
            },
          },
        ],
      });
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
