import type { OutboxEvent } from './event.ts';

/** What a transport promises; the engine and the conformance suite read these as data. */
export interface TransportCapabilities {
  /** Events with the same key arrive in the order they were sent. */
  readonly orderedPerKey: boolean;
  /** An acknowledged event survives a restart of the broker or receiver. */
  readonly persistent: boolean;
  /** Most events per `send()`; the engine never passes more. */
  readonly maxBatchSize?: number;
}

/**
 * The outcome of sending one event. Two kinds of failure are never mixed: `unavailable` says the
 * destination cannot take any event now (connection refused or cut, broker down, receiver timing
 * out or overloaded), and the relay waits for it without counting it against the event; `retry`
 * and `failed` say the destination refused this one event, which counts toward its retries.
 */
export type SendOutcome =
  | { readonly status: 'delivered' }
  /** This event was refused this time; worth trying again. Counts toward its retries. `retryAfterMs` is the receiver's own hint. */
  | { readonly status: 'retry'; readonly error: Error; readonly retryAfterMs?: number }
  /** The destination cannot be reached or cannot take events now: the relay waits for it, counting nothing against the event. */
  | { readonly status: 'unavailable'; readonly error: Error; readonly retryAfterMs?: number }
  /** Will never be delivered as it is: goes to the dead letters at once. */
  | { readonly status: 'failed'; readonly error: Error };

/**
 * How a relay hands events to a destination. `send` resolves only when the destination has
 * acknowledged (publisher confirm, acks=all, 2xx), with one outcome per event in batch order; a
 * `send` that throws counts as `retry` for the whole batch. `close` flushes and is idempotent.
 */
export interface Transport {
  readonly name: string;
  /**
   * The kind of destination for metrics and traces (`messaging.system`, the `transport` label):
   * `rabbitmq`, `kafka`, `webhook`. Default the name, which may carry an address and so should
   * not be a label: set this in a transport of your own.
   */
  readonly system?: string;
  readonly capabilities: TransportCapabilities;
  send(batch: readonly OutboxEvent[], signal: AbortSignal): Promise<readonly SendOutcome[]>;
  close(): Promise<void>;
}

export const delivered: SendOutcome = Object.freeze({ status: 'delivered' });

export function retry(error: unknown, retryAfterMs?: number): SendOutcome {
  const err = error instanceof Error ? error : new Error(String(error));
  return retryAfterMs === undefined ? { status: 'retry', error: err } : { status: 'retry', error: err, retryAfterMs };
}

/**
 * The destination is unavailable: nothing is counted against the event, the relay waits (capped
 * backoff, or `retryAfterMs` when longer) and reports the outage.
 *
 * @example
 * if (error.code === 'ECONNREFUSED') return batch.map(() => unavailable(error));
 */
export function unavailable(error: unknown, retryAfterMs?: number): SendOutcome {
  const err = error instanceof Error ? error : new Error(String(error));
  return retryAfterMs === undefined ? { status: 'unavailable', error: err } : { status: 'unavailable', error: err, retryAfterMs };
}

export function failed(error: unknown): SendOutcome {
  return { status: 'failed', error: error instanceof Error ? error : new Error(String(error)) };
}
