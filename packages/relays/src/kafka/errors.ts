import { TidingsError } from '@tidings/outbox';

/** Why an event cannot become a Kafka record as it is. */
export type KafkaEncodeReason = 'too-large' | 'invalid-topic';

/**
 * An event that Kafka cannot take as it is: its record is larger than `maxRecordBytes`, or the
 * `topic` option mapped it to a name Kafka refuses. Reported as `failed` (a dead letter at once),
 * since sending it again cannot help.
 */
export class KafkaEncodeError extends TidingsError {
  override readonly name = 'KafkaEncodeError';
  readonly reason: KafkaEncodeReason;
  readonly eventId: string;
  readonly topic: string;
  constructor(reason: KafkaEncodeReason, event: { eventId: string; topic: string }, detail: string) {
    super(`event ${event.eventId} (topic "${event.topic}") cannot be sent to Kafka: ${detail}`);
    this.reason = reason;
    this.eventId = event.eventId;
    this.topic = event.topic;
  }
}

/** What went wrong with a produce request. */
export type KafkaSendReason = 'timeout' | 'aborted' | 'client';

/**
 * Kafka did not acknowledge the records of a send (acks=all): the request failed, timed out, or
 * the send's signal was aborted while it waited. Always reported as `retry`: some records may
 * have been written, so sending again may duplicate them, never lose them.
 */
export class KafkaSendError extends TidingsError {
  override readonly name = 'KafkaSendError';
  readonly reason: KafkaSendReason;
  /** False when the client says the failure will not go away by itself (e.g. an authorization error). */
  readonly retriable: boolean;
  constructor(reason: KafkaSendReason, detail: string, options: { cause?: unknown; retriable?: boolean } = {}) {
    super(detail, { cause: options.cause });
    this.reason = reason;
    this.retriable = options.retriable ?? true;
  }
}


/** Why the consumer helper cannot turn a Kafka record into an event. */
export type InvalidRecordReason = 'no-value' | 'invalid-json';

/**
 * A Kafka record the consumer helper cannot read as a tidings event (no value, or a value that is
 * not UTF-8 JSON). It goes to the dead-letter topic when one is configured; otherwise its
 * partition waits, retrying, until an operator moves the group past it.
 */
export class InvalidRecordError extends TidingsError {
  override readonly name = 'InvalidRecordError';
  readonly reason: InvalidRecordReason;
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  constructor(reason: InvalidRecordReason, record: { topic: string; partition: number; offset: string }, detail: string) {
    super(`the record at ${record.topic}/${record.partition}@${record.offset} is not a tidings event: ${detail}`);
    this.reason = reason;
    this.topic = record.topic;
    this.partition = record.partition;
    this.offset = record.offset;
  }
}
