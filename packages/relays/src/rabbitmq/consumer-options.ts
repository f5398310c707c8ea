import { ConfigError } from '@tidings/outbox';
import { wholeOption } from '../shared/options.ts';
import { validateUrl, type ConnectionSettings } from './connection.ts';
import type { DeadLetterReason } from './errors.ts';
import { resolveCommon, resolveRetry, type ConsumerOptions, type RabbitmqDelivery, type ResolvedCommon, type RetryOptions } from '../shared/consumer.ts';
import type { TransactionSource } from '../shared/transaction-source.ts';
import { defaultExchange } from './transport-options.ts';

/** A binding of the consumer's queue: a routing key pattern on the `exchange` option, or on an exchange of your own. */
export type QueueBinding = string | { readonly exchange: string; readonly routingKey: string };

/** Something the consumer did; for logs, metrics and tests. */
export type RabbitmqConsumerEvent =
  | { readonly type: 'connected' }
  | { readonly type: 'disconnected'; readonly error: Error }
  /** The handler's transaction committed (or the inbox found a duplicate); the ack follows at once. */
  | { readonly type: 'committed'; readonly eventId: string; readonly attempt: number; readonly applied: boolean }
  | { readonly type: 'retry-scheduled'; readonly eventId: string; readonly attempt: number; readonly delayMs: number; readonly error: Error }
  | { readonly type: 'dead-lettered'; readonly eventId: string | null; readonly reason: DeadLetterReason; readonly error: Error }
  /** Something failed that is not the handler's doing (database, broker); the message stays queued. */
  | { readonly type: 'error'; readonly eventId: string | null; readonly error: Error };

export interface ConsumeRabbitmqOptions<Source extends TransactionSource>
  extends ConnectionSettings,
    ConsumerOptions<Source, RabbitmqDelivery, RabbitmqConsumerEvent> {
  /** The queue to consume. Declared durable unless `declareQueue` is false. */
  readonly queue: string;
  /**
   * Most unacknowledged messages at once (AMQP prefetch); also how many are handled at the same
   * time. Messages with the same key are handled one after another, in queue order. Default 20.
   */
  readonly prefetch?: number;
  /** Declare the queue (durable, with `queueArguments`) and its bindings. Default true. */
  readonly declareQueue?: boolean;
  /** Arguments of the declared queue, e.g. `{ 'x-queue-type': 'quorum' }`. */
  readonly queueArguments?: Record<string, unknown>;
  /** Bindings made when the queue is declared; strings bind on `exchange`. Default none. */
  readonly bindings?: readonly QueueBinding[];
  /** Exchange of string bindings, declared as a durable topic exchange. Default `tidings`. */
  readonly exchange?: string;
  /**
   * Runs of a failing handler before the message is dead-lettered (default 5; Infinity never
   * dead-letters), and the delay before each retry: `minDelayMs` (default 1 000) doubling up to
   * `maxDelayMs` (default 60 000). Each distinct delay is a retry queue with that TTL.
   */
  readonly retry?: RetryOptions;
  /** Exchange that receives messages that cannot be handled, with the reason in headers. Default `tidings.dead-letter`. */
  readonly deadLetterExchange?: string;
  /** Queue bound to the dead-letter exchange with this queue's name as routing key; false to bind none. Default `<queue>.dead-letter`. */
  readonly deadLetterQueue?: string | false;
  /** Delays between reconnection attempts, and pauses while the database fails. Default 200 to 10 000 ms. */
  readonly reconnect?: { readonly minDelayMs?: number; readonly maxDelayMs?: number };
}

export interface ResolvedConsumerOptions<Source extends TransactionSource> extends ResolvedCommon<Source, RabbitmqDelivery, RabbitmqConsumerEvent> {
  readonly connection: ConnectionSettings;
  readonly queue: string;
  readonly prefetch: number;
  readonly declareQueue: boolean;
  readonly queueArguments: Record<string, unknown> | undefined;
  readonly bindings: readonly { readonly exchange: string; readonly routingKey: string }[];
  readonly exchange: string;
  readonly attempts: number;
  /** The delay before retry n is `delays[min(n, delays.length) - 1]`. */
  readonly delays: readonly number[];
  readonly deadLetterExchange: string;
  readonly deadLetterQueue: string | undefined;
  readonly reconnect: { readonly minDelayMs: number; readonly maxDelayMs: number };
}

export function resolveConsumerOptions<Source extends TransactionSource>(options: ConsumeRabbitmqOptions<Source>): ResolvedConsumerOptions<Source> {
  const common = resolveCommon(options, 'url, queue, consumer, database and handler');
  const url = validateUrl(options.url);
  const queue = name('queue', options.queue);
  const exchange = options.exchange ?? defaultExchange;
  const bindings = (options.bindings ?? []).map((binding) => (typeof binding === 'string' ? { exchange, routingKey: binding } : binding));
  const retry = resolveRetry(options.retry, { attempts: 5, minDelayMs: 1_000, maxDelayMs: 60_000 });
  const minDelayMs = wholeOption('reconnect.minDelayMs', options.reconnect?.minDelayMs, 200);
  const deadLetterQueue = options.deadLetterQueue === false ? undefined : name('deadLetterQueue', options.deadLetterQueue ?? `${queue}.dead-letter`);
  return {
    ...common,
    connection: {
      url,
      socketOptions: options.socketOptions,
      connectTimeoutMs: wholeOption('connectTimeoutMs', options.connectTimeoutMs, 10_000),
      heartbeatSeconds: wholeOption('heartbeatSeconds', options.heartbeatSeconds, 10),
      connectionName: options.connectionName ?? `tidings consumer ${options.consumer} (pid ${process.pid})`,
    },
    queue,
    prefetch: wholeOption('prefetch', options.prefetch, 20, 1, 65_535),
    declareQueue: options.declareQueue ?? true,
    queueArguments: options.queueArguments,
    bindings,
    exchange,
    attempts: retry.attempts,
    delays: retryDelays(retry),
    deadLetterExchange: name('deadLetterExchange', options.deadLetterExchange ?? 'tidings.dead-letter'),
    deadLetterQueue,
    reconnect: { minDelayMs, maxDelayMs: wholeOption('reconnect.maxDelayMs', options.reconnect?.maxDelayMs, Math.max(minDelayMs, 10_000)) },
  };
}

/** The delays of successive retries: from `minDelayMs`, doubling, until `maxDelayMs` (then it repeats). */
function retryDelays(retry: { readonly attempts: number; readonly minDelayMs: number; readonly maxDelayMs: number }): number[] {
  const delays = [retry.minDelayMs];
  while (delays.length < retry.attempts - 1 && delays.at(-1)! < retry.maxDelayMs) delays.push(Math.min(retry.maxDelayMs, delays.at(-1)! * 2));
  return delays;
}

/**
 * The queue holding messages waiting `delayMs` before they go back to `queue`.
 *
 * @example
 * retryQueueName('billing', 1_000); // 'billing.retry.1000ms'
 */
export function retryQueueName(queue: string, delayMs: number): string {
  return `${queue}.retry.${delayMs}ms`;
}

function name(option: string, value: unknown): string {
  // Leave room for the ".retry.<delay>ms" and ".dead-letter" suffixes within AMQP's 255 bytes.
  if (typeof value !== 'string' || value === '' || Buffer.byteLength(value) > 200 || value.startsWith('amq.')) {
    throw new ConfigError(option, `expected a name of 1 to 200 bytes not starting with "amq.", got ${JSON.stringify(value)}`);
  }
  return value;
}
