import type { PgDatabaseOptions, RelayOptions, RetentionScheduleOptions, RetryPolicy } from '@tidings/outbox';
import type { TidingsConfig } from './config.ts';
import type { KafkaClientOptions } from '../kafka/kafka-client.ts';
import type { KafkaTransportOptions } from '../kafka/transport-options.ts';
import type { ExchangeDeclaration } from '../rabbitmq/confirm-link.ts';
import type { RabbitmqTransportOptions } from '../rabbitmq/transport-options.ts';
import type { AddressPolicy } from '../webhook/address-policy.ts';
import type { WebhookDispatcherOptions } from '../webhook/dispatcher.ts';
import type { CloudEventsOptions } from '../shared/cloud-events.ts';

/**
 * Every key a config file may use, level by level. Each list is checked against the option type
 * it feeds: the compiler refuses a list that misses an option or names one that does not exist,
 * so the config loader and the factories cannot drift apart.
 */
function keysOf<T>() {
  return <const K extends { readonly [P in keyof T]-?: true }>(keys: K & { readonly [P in Exclude<keyof K, keyof T>]: never }): readonly string[] =>
    Object.freeze(Object.keys(keys));
}

/** A config file's relay: `createRelay` options without the ones the command supplies. */
type RelayFileOptions = Pick<RelayOptions, 'topics' | 'tenant' | 'batchSize' | 'pollIntervalMs' | 'leaseTtlMs' | 'retry' | 'onFailure' | 'startFrom'> & {
  readonly name: string;
  readonly transport: unknown;
};

/** A config file's `retention` object: the schedule's options without the ones the command supplies. */
export type RetentionFileOptions = Pick<RetentionScheduleOptions, 'retentionMs' | 'deadLetterRetentionMs' | 'batchSize' | 'intervalMs'>;

/** A config file's `webhooks` object: dispatcher options without the ones the command supplies. */
type WebhooksFileOptions = Omit<WebhookDispatcherOptions, 'database' | 'schema' | 'keyring' | 'onEvent'>;

export const configKeys = Object.freeze({
  top: keysOf<TidingsConfig>()({ database: true, schema: true, pool: true, webhooks: true, relays: true, retention: true, metricsPort: true, metricsHost: true }),
  pool: keysOf<PgDatabaseOptions>()({ max: true, keepAlive: true, keepAliveInitialDelayMs: true, connectTimeoutMs: true, queryTimeoutMs: true, listenHeartbeatMs: true }),
  retention: keysOf<RetentionFileOptions>()({ retentionMs: true, deadLetterRetentionMs: true, batchSize: true, intervalMs: true }),
  relay: keysOf<RelayFileOptions>()({
    name: true,
    transport: true,
    topics: true,
    tenant: true,
    batchSize: true,
    pollIntervalMs: true,
    leaseTtlMs: true,
    retry: true,
    onFailure: true,
    startFrom: true,
  }),
  retry: keysOf<RetryPolicy>()({ retries: true, minDelayMs: true, maxDelayMs: true, factor: true }),
  rabbitmq: [
    'type',
    ...keysOf<RabbitmqTransportOptions>()({
      url: true,
      socketOptions: true,
      connectTimeoutMs: true,
      heartbeatSeconds: true,
      connectionName: true,
      name: true,
      exchange: true,
      route: true,
      exchanges: true,
      unroutable: true,
      maxUnconfirmed: true,
      sendTimeoutMs: true,
      reconnect: true,
      maxBatchSize: true,
      onEvent: true,
      cloudEvents: true,
    }),
  ],
  rabbitmqReconnect: keysOf<NonNullable<RabbitmqTransportOptions['reconnect']>>()({ minDelayMs: true, maxDelayMs: true }),
  rabbitmqExchange: keysOf<ExchangeDeclaration>()({ name: true, type: true, durable: true, arguments: true }),
  kafka: [
    'type',
    ...keysOf<KafkaTransportOptions>()({
      name: true,
      brokers: true,
      library: true,
      client: true,
      compression: true,
      producer: true,
      topic: true,
      maxRecordBytes: true,
      maxRequestBytes: true,
      sendTimeoutMs: true,
      maxBatchSize: true,
      onEvent: true,
      cloudEvents: true,
    }),
  ],
  kafkaClient: keysOf<Omit<KafkaClientOptions, 'brokers'>>()({
    clientId: true,
    ssl: true,
    sasl: true,
    connectTimeoutMs: true,
    requestTimeoutMs: true,
    logLevel: true,
    logger: true,
    socketFactory: true,
    kafkajs: true,
  }),
  webhooks: keysOf<WebhooksFileOptions>()({
    connectTimeoutMs: true,
    sendTimeoutMs: true,
    maxRetryAfterMs: true,
    maxConnections: true,
    userAgent: true,
    addressPolicy: true,
    retry: true,
    disableAfterMs: true,
    refreshIntervalMs: true,
    stopGraceMs: true,
    relay: true,
    cloudEvents: true,
  }),
  webhooksRelay: keysOf<NonNullable<WebhookDispatcherOptions['relay']>>()({ pollIntervalMs: true, leaseTtlMs: true, heartbeatIntervalMs: true }),
  addressPolicy: keysOf<AddressPolicy>()({ allow: true, resolve: true }),
  cloudEvents: keysOf<CloudEventsOptions>()({ source: true }),
});
