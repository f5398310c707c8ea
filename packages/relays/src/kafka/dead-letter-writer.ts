import type { DeadLetterProducer } from './consumer-client.ts';
import type { KafkaMessageLike } from './record-codec.ts';
import { kafkaHeaders } from './record-codec.ts';

/** Why a record went to the dead-letter topic; carried in its `tidings_dead_letter_reason` header. */
export type KafkaDeadLetterReason = 'invalid-record' | 'handler-failed';

/**
 * Copies records the consumer helper cannot apply to the dead-letter topic: same key, value and
 * headers, plus the reason, the last error, where the record came from and how often it was tried.
 */
export class DeadLetterWriter {
  readonly #producer: DeadLetterProducer;
  readonly #topic: string;

  constructor(producer: DeadLetterProducer, topic: string) {
    this.#producer = producer;
    this.#topic = topic;
  }

  get topic(): string {
    return this.#topic;
  }

  /** Resolves once Kafka acknowledged the copy (acks=all); rejects otherwise, and the next call reconnects. */
  write(from: { topic: string; partition: number }, message: KafkaMessageLike, reason: KafkaDeadLetterReason, error: Error, attempts: number): Promise<void> {
    return this.#producer.send({
      topic: this.#topic,
      key: message.key,
      value: message.value,
      headers: {
        ...message.headers,
        [kafkaHeaders.deadLetterReason]: reason,
        [kafkaHeaders.error]: `${error.name}: ${error.message}`.slice(0, 4_000),
        [kafkaHeaders.source]: `${from.topic}/${from.partition}@${message.offset}`,
        [kafkaHeaders.attempts]: String(attempts),
      },
    });
  }

  close(): Promise<void> {
    return this.#producer.close();
  }
}
