/**
 * The one contract every consumer helper follows (RabbitMQ, Kafka, webhook receiver, SSE, polling):
 * the same option names, one handler signature `handler(trx, event)`, one received-event type, one
 * transaction source, one retry shape, one observer `onEvent` and one `{ close(), done }` lifecycle.
 * What differs per transport lives in `event.delivery` and in each helper's own extra options.
 */
import { ConfigError, TidingsError, type Json } from '@tidings/outbox';
import { asError } from './backoff.ts';
import { observer } from '@tidings/outbox/internal';
import { wholeOption } from './options.ts';
import { acceptedSources, isTransactionSource, type TransactionOf, type TransactionSource } from './transaction-source.ts';

/** Where a received event came from: what only its transport can say. */
export type Delivery = RabbitmqDelivery | KafkaDelivery | WebhookDelivery | FeedDelivery;

export interface RabbitmqDelivery {
  readonly transport: 'rabbitmq';
  readonly queue: string;
  /** RabbitMQ delivered this message before (to this or another consumer) without an ack. */
  readonly redelivered: boolean;
}

export interface KafkaDelivery {
  readonly transport: 'kafka';
  /** The Kafka topic (the event's own `topic` is the outbox topic). */
  readonly topic: string;
  readonly partition: number;
  /** The record's offset, a decimal string (offsets are 64-bit). */
  readonly offset: string;
  /** The record's timestamp in milliseconds, a decimal string. */
  readonly timestamp: string;
}

export interface WebhookDelivery {
  readonly transport: 'webhook';
  /** When this request was signed (`webhook-timestamp`). */
  readonly sentAt: Date;
}

export interface FeedDelivery {
  readonly transport: 'sse' | 'polling' | 'websocket';
  /** The feed position right after this event; the consumer stores it with the handler's effects. */
  readonly cursor: string;
}

/** What an event carries on every transport, received or sent. */
export interface EventFields {
  /** The outbox event id: the same on every delivery, the inbox's dedup key. */
  readonly eventId: string;
  /** The outbox topic. */
  readonly topic: string;
  readonly key: string | null;
  readonly tenant: string | null;
  readonly payload: Json;
  /** The event's own headers (e.g. `traceparent`), without tidings' and the transport's. */
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * An event as every consumer helper hands it to its handler.
 *
 * @example
 * handler: async (trx, event) => {
 *   if (event.topic === 'orders.paid') await markPaid(trx, event.key!, event.payload);
 * }
 */
export interface ReceivedEvent<D extends Delivery = Delivery> extends EventFields {
  /** When the event was published; null only for a message another producer wrote without saying. */
  readonly createdAt: Date | null;
  /**
   * Which run of the handler on this event this is, as far as the helper can tell: 1, then 2 for
   * the first retry, and so on. RabbitMQ carries the count on the message (`x-tidings-attempt`);
   * Kafka and the feeds count the runs of this process; a webhook receiver cannot see the sender's
   * earlier requests and always says 1.
   */
  readonly attempt: number;
  readonly delivery: D;
}

/** How a helper that retries a failing handler itself waits between runs; exponential with jitter. */
export interface RetryOptions {
  /** Runs of the handler on one event before the helper gives up on it (what giving up means is the helper's). */
  readonly attempts?: number;
  /** Delay before the first retry. */
  readonly minDelayMs?: number;
  /** The delay doubles up to this. */
  readonly maxDelayMs?: number;
}

/** Options every consumer helper takes. */
export interface ConsumerOptions<Source extends TransactionSource, D extends Delivery, E extends { readonly type: string }> {
  /** The inbox consumer name: each event is applied once per consumer name. */
  readonly consumer: string;
  /**
   * Where the handler's transaction runs: a kysely instance, a pg Pool, a tidings Database, a Drizzle
   * database, a TypeORM DataSource, a PrismaClient, a MikroORM EntityManager, postgres.js's sql, or
   * a function that runs a transaction.
   */
  readonly database: Source;
  /**
   * Applies one event inside the transaction that also records it (inbox mark or checkpoint).
   * Throwing, or returning after a statement of the transaction failed, rolls both back: the event
   * is not acknowledged and comes again.
   */
  readonly handler: (trx: TransactionOf<Source>, event: ReceivedEvent<D>) => unknown;
  /** Schema of the inbox tables. Default `tidings`. */
  readonly schema?: string;
  /** Hears what the consumer does, for logs, metrics and tests. What it throws is ignored: an observer never breaks delivery. */
  readonly onEvent?: (event: E) => void;
}

/** A running consumer helper. */
export interface Consumer {
  /**
   * Stops taking events, lets the handler transactions in progress finish (and acknowledges what
   * committed), then disconnects. Idempotent; resolves when stopped.
   */
  close(): Promise<void>;
  /**
   * Settles when the consumer has stopped: resolves after `close()`, rejects with the error that
   * stopped it by itself (one that asking again cannot change).
   */
  readonly done: Promise<void>;
}

export interface ResolvedCommon<Source extends TransactionSource, D extends Delivery, E> {
  readonly consumer: string;
  readonly database: Source;
  readonly handler: (trx: TransactionOf<Source>, event: ReceivedEvent<D>) => unknown;
  readonly schema: string | undefined;
  readonly onEvent: (event: E) => void;
}

/** Checks the options every helper shares, with errors that say what to pass. */
export function resolveCommon<Source extends TransactionSource, D extends Delivery, E extends { readonly type: string }>(
  options: ConsumerOptions<Source, D, E>,
  needs: string,
): ResolvedCommon<Source, D, E> {
  if (typeof options !== 'object' || options === null) throw new ConfigError('options', `pass an object with ${needs}`);
  if (typeof options.consumer !== 'string' || options.consumer === '') throw new ConfigError('consumer', 'pass the inbox consumer name, e.g. "billing"');
  if (!isTransactionSource(options.database)) {
    throw new ConfigError('database', `pass ${acceptedSources}`);
  }
  if (typeof options.handler !== 'function') throw new ConfigError('handler', 'pass a function (trx, event) => … that applies the event');
  if (options.schema !== undefined && (typeof options.schema !== 'string' || options.schema === '')) {
    throw new ConfigError('schema', `expected the inbox tables' schema name, got ${JSON.stringify(options.schema)}`);
  }
  if (options.onEvent !== undefined && typeof options.onEvent !== 'function') throw new ConfigError('onEvent', 'pass a function (event) => void');
  return {
    consumer: options.consumer,
    database: options.database,
    handler: options.handler,
    schema: options.schema,
    onEvent: observer(options.onEvent),
  };
}

/** Resolves `retry` with a helper's defaults; `attempts` may be Infinity where the helper allows it. */
export function resolveRetry(
  retry: RetryOptions | undefined,
  defaults: { readonly attempts: number; readonly minDelayMs: number; readonly maxDelayMs: number },
): { readonly attempts: number; readonly minDelayMs: number; readonly maxDelayMs: number } {
  if (retry !== undefined && (typeof retry !== 'object' || retry === null)) throw new ConfigError('retry', 'pass { attempts, minDelayMs, maxDelayMs }');
  const attempts = retry?.attempts === Infinity ? Infinity : wholeOption('retry.attempts', retry?.attempts, defaults.attempts);
  const minDelayMs = wholeOption('retry.minDelayMs', retry?.minDelayMs, defaults.minDelayMs);
  const maxDelayMs = wholeOption('retry.maxDelayMs', retry?.maxDelayMs, Math.max(defaults.maxDelayMs, minDelayMs));
  if (maxDelayMs < minDelayMs) throw new ConfigError('retry.maxDelayMs', `must be at least retry.minDelayMs (${minDelayMs}), got ${maxDelayMs}`);
  return { attempts, minDelayMs, maxDelayMs };
}

/**
 * A `done` promise and the functions that settle it. Unobserved, its rejection is not an
 * unhandled one: a consumer that nobody awaits still reports through `onEvent`.
 */
export function lifecycle(): { readonly done: Promise<void>; stopped(): void; failed(error: unknown): void } {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const done = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  done.catch(() => {});
  return { done, stopped: () => resolve(), failed: (error) => reject(asError(error)) };
}

/**
 * A consumer gave up on an event after `retry.attempts` runs of its handler failed, where giving
 * up means stopping (a feed, which keeps order and has no dead letters): its `done` rejects with
 * this, and nothing after the event was applied. Fix the handler or the data, then start the
 * consumer again: it resumes at the event.
 *
 * @example
 * consumer.done.catch((error) => {
 *   if (error instanceof HandlerFailedError) alert(`billing stopped at ${error.eventId}: ${error.cause}`);
 * });
 */
export class HandlerFailedError extends TidingsError {
  override readonly name = 'HandlerFailedError';
  readonly reason = 'handler-failed';
  readonly eventId: string;
  readonly attempts: number;
  constructor(eventId: string, attempts: number, cause: Error) {
    super(`the handler failed ${attempts} times on event ${eventId}; the consumer stopped there (last error: ${cause.message})`, { cause });
    this.eventId = eventId;
    this.attempts = attempts;
  }
}
