import { TidingsError, type OutboxEvent } from '@tidings/outbox';

/** What sends do while the broker is down: answer `unavailable` at once (connection refused), reject, or wait for `recover()`. */
export type DownBehaviour = 'retry' | 'throw' | 'hang';

/** Decides the fate of one event reaching the broker: `'retry'` or `'failed'` fails it on purpose. */
export type FailurePredicate = (event: OutboxEvent) => 'retry' | 'failed' | false | undefined | null;

export type MemoryFailureReason = 'down' | 'connection-cut' | 'injected' | 'not-attempted';

/**
 * Why the memory broker did not take an event: it was down, the connection was cut, or a test asked for it.
 *
 * @example
 * const [outcome] = await transport.send([event], signal);
 * if (outcome.status === 'unavailable' && outcome.error instanceof MemoryBrokerError) outcome.error.reason; // 'down'
 */
export class MemoryBrokerError extends TidingsError {
  override readonly name = 'MemoryBrokerError';
  readonly reason: MemoryFailureReason;
  constructor(reason: MemoryFailureReason, message: string) {
    super(message);
    this.reason = reason;
  }
}
