import { ConfigError, type OutboxEvent } from '@tidings/outbox';
import { observer } from '@tidings/outbox/internal';
import { wholeOption } from '../shared/options.ts';
import { validateUrl, type ConnectionSettings } from './connection.ts';
import type { ExchangeDeclaration } from './confirm-link.ts';
import { resolveCloudEvents, type CloudEventsOptions, type ResolvedCloudEvents } from '../shared/cloud-events.ts';

/** Where one event is published. */
export interface RabbitmqRoute {
  readonly exchange: string;
  readonly routingKey: string;
}

/** Something happened to the transport's connection; for logs and metrics. */
export type RabbitmqTransportEvent =
  | { readonly type: 'connected' }
  | { readonly type: 'disconnected'; readonly error: Error }
  | { readonly type: 'connect-failed'; readonly error: Error; readonly retryInMs: number }
  | { readonly type: 'blocked'; readonly reason: string }
  | { readonly type: 'unblocked' };

export interface RabbitmqTransportOptions extends ConnectionSettings {
  /** The transport's name in relay logs and errors. Default `rabbitmq`. */
  readonly name?: string;
  /** Exchange of the default route. Default `tidings`. */
  readonly exchange?: string;
  /**
   * Where each event goes. Default: the `exchange` option, routing key = the event's topic.
   *
   * @example
   * route: (event) => ({ exchange: `events.${event.topic.split('.')[0]}`, routingKey: event.topic })
   */
  readonly route?: (event: OutboxEvent) => RabbitmqRoute;
  /**
   * Exchanges declared (idempotently) on every connection. Default: the `exchange` option as a
   * durable topic exchange. Pass `[]` to declare nothing (the exchanges are managed elsewhere).
   */
  readonly exchanges?: readonly ExchangeDeclaration[];
  /**
   * What an event that no queue received (returned as unroutable, or its exchange is missing)
   * counts as. Either way it is never `delivered`.
   * - `retry` (default): the relay retries it with backoff, holding its partition back, then
   *   dead-letters it when the retries run out (or keeps trying, in `block` mode). Right when
   *   queues may be declared after the publisher starts, or a binding is briefly gone.
   * - `failed`: a dead letter at once, and the partition moves on.
   */
  readonly unroutable?: 'retry' | 'failed';
  /** Most messages published and not yet confirmed, over all sends. Default 1 000. */
  readonly maxUnconfirmed?: number;
  /**
   * A send that has not been confirmed after this long reports `retry` for what is unconfirmed,
   * and the connection is dropped and reopened on the next send. Default 30 000 ms.
   */
  readonly sendTimeoutMs?: number;
  /** Delays between reconnection attempts (exponential, with jitter). Default 200 to 5 000 ms. */
  readonly reconnect?: { readonly minDelayMs?: number; readonly maxDelayMs?: number };
  /** Most events per send, declared to the relay. Default: no limit. */
  readonly maxBatchSize?: number;
  /** Hears the connection's ups and downs. What it throws is ignored: an observer never breaks delivery. */
  readonly onEvent?: (event: RabbitmqTransportEvent) => void;
  /** Also send every message as a CloudEvent 1.0 in binary content mode (`cloudEvents:*` headers). Default: off. */
  readonly cloudEvents?: CloudEventsOptions;
}

export interface ResolvedTransportOptions {
  readonly name: string;
  readonly connection: ConnectionSettings;
  readonly route: (event: OutboxEvent) => RabbitmqRoute;
  readonly exchanges: readonly ExchangeDeclaration[];
  readonly unroutable: 'retry' | 'failed';
  readonly maxUnconfirmed: number;
  readonly sendTimeoutMs: number;
  readonly reconnect: { readonly minDelayMs: number; readonly maxDelayMs: number };
  readonly maxBatchSize: number | undefined;
  readonly onEvent: (event: RabbitmqTransportEvent) => void;
  readonly cloudEvents: ResolvedCloudEvents | undefined;
}

export const defaultExchange = 'tidings';

export function resolveTransportOptions(options: RabbitmqTransportOptions): ResolvedTransportOptions {
  if (typeof options !== 'object' || options === null) throw new ConfigError('options', 'pass an object with at least { url }');
  const url = validateUrl(options.url);
  const exchange = options.exchange ?? defaultExchange;
  if (typeof exchange !== 'string' || Buffer.byteLength(exchange) > 255) throw new ConfigError('exchange', 'expected an exchange name of at most 255 bytes');
  if (options.route !== undefined && typeof options.route !== 'function') throw new ConfigError('route', 'expected a function (event) => ({ exchange, routingKey })');
  const exchanges = options.exchanges ?? (exchange === '' ? [] : [{ name: exchange, type: 'topic', durable: true }]);
  if (!Array.isArray(exchanges) || exchanges.some((e: ExchangeDeclaration) => typeof e?.name !== 'string' || e.name === '')) {
    throw new ConfigError('exchanges', 'expected a list of { name, type?, durable?, arguments? }');
  }
  const unroutable = options.unroutable ?? 'retry';
  if (unroutable !== 'retry' && unroutable !== 'failed') throw new ConfigError('unroutable', `expected "retry" or "failed", got ${JSON.stringify(unroutable)}`);
  const minDelayMs = wholeOption('reconnect.minDelayMs', options.reconnect?.minDelayMs, 200);
  const cloudEvents = resolveCloudEvents(options.cloudEvents);
  return {
    name: options.name ?? 'rabbitmq',
    connection: {
      url,
      socketOptions: options.socketOptions,
      connectTimeoutMs: wholeOption('connectTimeoutMs', options.connectTimeoutMs, 10_000),
      heartbeatSeconds: wholeOption('heartbeatSeconds', options.heartbeatSeconds, 10),
      connectionName: options.connectionName ?? `tidings relay (pid ${process.pid})`,
    },
    route: options.route ?? ((event) => ({ exchange, routingKey: event.topic })),
    exchanges,
    unroutable,
    maxUnconfirmed: wholeOption('maxUnconfirmed', options.maxUnconfirmed, 1_000),
    sendTimeoutMs: wholeOption('sendTimeoutMs', options.sendTimeoutMs, 30_000),
    reconnect: { minDelayMs, maxDelayMs: wholeOption('reconnect.maxDelayMs', options.reconnect?.maxDelayMs, Math.max(minDelayMs, 5_000)) },
    maxBatchSize: options.maxBatchSize === undefined ? undefined : wholeOption('maxBatchSize', options.maxBatchSize, 1),
    onEvent: observer(options.onEvent),
    cloudEvents,
  };
}
