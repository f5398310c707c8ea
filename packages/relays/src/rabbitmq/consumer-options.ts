import { ConfigError } from '@tidings/outbox';
import { positiveIntegerOption } from './positive-integer-option.ts';
import { validateUrl, type ConnectionSettings } from './connection.ts';
import type { DeadLetterReason } from './errors.ts';
import type { ReceivedEvent } from './message-codec.ts';
import { isTransactionSource, type TransactionOf, type TransactionSource } from '../shared/transaction-source.ts';
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

export interface ConsumeRabbitmqOptions<Source extends TransactionSource> extends ConnectionSettings {
  /** The queue to consume. Declared durable unless `declareQueue` is false. */
  readonly queue: string;
  /** The inbox consumer name: each event is applied once per consumer name. */
  readonly consumer: string;
  /** Where the handler's transaction runs: a kysely instance, a pg Pool, a tidings Database or a runner function. */
  readonly database: Source;
  /**
   * Applies one event, inside the transaction that also records it in the inbox. Throwing rolls
   * both back and schedules a retry. Called at most once per event and consumer among committed
   * transactions, however often RabbitMQ delivers the message.
   */
  readonly handler: (trx: TransactionOf<Source>, event: ReceivedEvent) => unknown;
  /** Schema of the inbox tables. Default `tidings`. */
  readonly schema?: string;
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
  readonly retry?: {
    /** Runs of the handler before the message is dead-lettered. Default 5. */
    readonly attempts?: number;
    /** Delay before each retry; a list gives the delay per retry, its last entry repeating. Default [1 000, 10 000, 60 000] ms. */
    readonly delayMs?: number | readonly number[];
  };
  /** Exchange that receives messages that cannot be handled, with the reason in headers. Default `tidings.dead-letter`. */
  readonly deadLetterExchange?: string;
  /** Queue bound to the dead-letter exchange with this queue's name as routing key; false to bind none. Default `<queue>.dead-letter`. */
  readonly deadLetterQueue?: string | false;
  /** Delays between reconnection attempts, and pauses while the database fails. Default 200 to 10 000 ms. */
  readonly reconnect?: { readonly minDelayMs?: number; readonly maxDelayMs?: number };
  readonly onEvent?: (event: RabbitmqConsumerEvent) => void;
}

export interface ResolvedConsumerOptions<Source extends TransactionSource> {
  readonly connection: ConnectionSettings;
  readonly queue: string;
  readonly consumer: string;
  readonly database: Source;
  readonly handler: (trx: TransactionOf<Source>, event: ReceivedEvent) => unknown;
  readonly schema: string | undefined;
  readonly prefetch: number;
  readonly declareQueue: boolean;
  readonly queueArguments: Record<string, unknown> | undefined;
  readonly bindings: readonly { readonly exchange: string; readonly routingKey: string }[];
  readonly exchange: string;
  readonly attempts: number;
  readonly delays: readonly number[];
  readonly deadLetterExchange: string;
  readonly deadLetterQueue: string | undefined;
  readonly reconnect: { readonly minDelayMs: number; readonly maxDelayMs: number };
  readonly onEvent: (event: RabbitmqConsumerEvent) => void;
}

export function resolveConsumerOptions<Source extends TransactionSource>(options: ConsumeRabbitmqOptions<Source>): ResolvedConsumerOptions<Source> {
  if (typeof options !== 'object' || options === null) throw new ConfigError('options', 'pass an object with url, queue, consumer, database and handler');
  const url = validateUrl(options.url);
  const queue = name('queue', options.queue);
  if (typeof options.consumer !== 'string' || options.consumer === '') throw new ConfigError('consumer', 'pass the inbox consumer name, e.g. "billing"');
  if (!isTransactionSource(options.database)) {
    throw new ConfigError('database', 'pass a kysely instance, a pg Pool, a tidings Database, or a function that runs a transaction');
  }
  if (typeof options.handler !== 'function') throw new ConfigError('handler', 'pass a function (trx, event) => … that applies the event');
  const exchange = options.exchange ?? defaultExchange;
  const bindings = (options.bindings ?? []).map((binding) => (typeof binding === 'string' ? { exchange, routingKey: binding } : binding));
  const delayOption = options.retry?.delayMs ?? [1_000, 10_000, 60_000];
  const delays = (typeof delayOption === 'number' ? [delayOption] : [...delayOption]).map((d, i) => positiveIntegerOption(`retry.delayMs[${i}]`, d, 1));
  if (delays.length === 0) throw new ConfigError('retry.delayMs', 'give at least one delay');
  const minDelayMs = positiveIntegerOption('reconnect.minDelayMs', options.reconnect?.minDelayMs, 200);
  const deadLetterQueue = options.deadLetterQueue === false ? undefined : name('deadLetterQueue', options.deadLetterQueue ?? `${queue}.dead-letter`);
  return {
    connection: {
      url,
      socketOptions: options.socketOptions,
      connectTimeoutMs: positiveIntegerOption('connectTimeoutMs', options.connectTimeoutMs, 10_000),
      heartbeatSeconds: positiveIntegerOption('heartbeatSeconds', options.heartbeatSeconds, 10),
      connectionName: options.connectionName ?? `tidings consumer ${options.consumer} (pid ${process.pid})`,
    },
    queue,
    consumer: options.consumer,
    database: options.database,
    handler: options.handler,
    schema: options.schema,
    prefetch: positiveIntegerOption('prefetch', options.prefetch, 20, 65_535),
    declareQueue: options.declareQueue ?? true,
    queueArguments: options.queueArguments,
    bindings,
    exchange,
    attempts: positiveIntegerOption('retry.attempts', options.retry?.attempts, 5),
    delays,
    deadLetterExchange: name('deadLetterExchange', options.deadLetterExchange ?? 'tidings.dead-letter'),
    deadLetterQueue,
    reconnect: { minDelayMs, maxDelayMs: positiveIntegerOption('reconnect.maxDelayMs', options.reconnect?.maxDelayMs, Math.max(minDelayMs, 10_000)) },
    onEvent: options.onEvent ?? (() => {}),
  };
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
