import { TidingsError } from '@tidings/outbox';

/**
 * An argument given to the inbox (an event id, a checkpoint source or position) cannot be used;
 * nothing of that call was written.
 */
export class InvalidInputError extends TidingsError {
  override readonly name = 'InvalidInputError';
  /** The argument at fault, e.g. `eventId` or `position`. */
  readonly field: string;
  constructor(field: string, detail: string) {
    super(`${field} ${detail}`);
    this.field = field;
  }
}

/**
 * `saveCheckpoint()` was told which position to move from (`expected`), and the stored position
 * is no longer that one: another worker (for example one that still believed it owned a Kafka
 * partition) has moved it. Roll back the transaction, so that its effects are not applied twice.
 */
export class CheckpointConflictError extends TidingsError {
  override readonly name = 'CheckpointConflictError';
  readonly consumer: string;
  readonly source: string;
  readonly expected: string | null;
  constructor(consumer: string, source: string, expected: string | null) {
    super(
      `the checkpoint of consumer "${consumer}" for source "${source}" is no longer ` +
        `${expected === null ? 'absent' : `at ${JSON.stringify(expected)}`}: another worker moved it. ` +
        'Roll back this transaction, then load the checkpoint again and resume from there.',
    );
    this.consumer = consumer;
    this.source = source;
    this.expected = expected;
  }
}
