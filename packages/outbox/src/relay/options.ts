import { ConfigError } from '../errors.ts';
import type { Database } from '../executor.ts';
import { isMutant } from '../mutants.ts';
import { positiveInteger, resolveSchema } from '../options.ts';
import type { Transport } from '../transport.ts';

/** How long a retryable failure is retried before the event becomes a dead letter. */
export interface RetryPolicy {
  /** Retries after the first attempt. Default 10. */
  readonly retries?: number;
  /** First delay in ms. Default 100. */
  readonly minDelayMs?: number;
  /** Longest delay in ms. Default 30 000. */
  readonly maxDelayMs?: number;
  /** Growth of the delay per attempt. Default 2. */
  readonly factor?: number;
}

/** Something happened in a relay; for metrics, logs and tests. */
export type RelayEvent =
  | { readonly type: 'delivered'; readonly partition: number; readonly count: number }
  | { readonly type: 'retry'; readonly partition: number; readonly eventId: string; readonly attempt: number; readonly error: Error }
  | { readonly type: 'dead-letter'; readonly partition: number; readonly eventId: string; readonly error: Error }
  | { readonly type: 'lease-acquired' | 'lease-released' | 'lease-lost'; readonly partition: number }
  | { readonly type: 'error'; readonly partition?: number; readonly error: Error };

export interface RelayOptions {
  /** Name of the relay: its cursors and dead letters are kept under it. */
  readonly name: string;
  readonly database: Database;
  readonly transport: Transport;
  /** Schema the outbox was migrated into. Default `tidings`. */
  readonly schema?: string;
  /** Topic patterns to relay: exact names or prefixes ending in `*`. Default: every topic. */
  readonly topics?: readonly string[];
  /** Relay only this tenant's events (e.g. a tenant's webhook endpoint). Default: every event. */
  readonly tenant?: string;
  /** Most events read and sent at once. Default 500 (or the transport's own limit, if lower). */
  readonly batchSize?: number;
  /** How often an idle partition looks for events that no NOTIFY announced. Default 1 000 ms. */
  readonly pollIntervalMs?: number;
  /** How long a lease lasts without renewal. Default 15 000 ms. */
  readonly leaseTtlMs?: number;
  /** How often leases are renewed and partitions rebalanced. Default a fifth of the lease. */
  readonly heartbeatIntervalMs?: number;
  readonly retry?: RetryPolicy;
  /**
   * When an event cannot be delivered: `dead-letter` (default) records it and moves on; `block`
   * keeps retrying it and holds its partition back, so nothing after it overtakes it.
   */
  readonly onFailure?: 'dead-letter' | 'block';
  /** Where a new relay starts: the beginning of the log (default) or the events written from now. */
  readonly startFrom?: 'beginning' | 'now';
  /** This worker's id; default a random one. Must be unique among the relay's live workers. */
  readonly workerId?: string;
  /** Close the transport when the relay stops. Default true. */
  readonly closeTransport?: boolean;
  readonly onEvent?: (event: RelayEvent) => void;
}

export interface ResolvedRelayOptions {
  readonly name: string;
  readonly database: Database;
  readonly transport: Transport;
  readonly schema: string;
  readonly topics: readonly string[] | undefined;
  readonly tenant: string | undefined;
  readonly batchSize: number;
  readonly pollIntervalMs: number;
  readonly leaseTtlMs: number;
  readonly heartbeatIntervalMs: number;
  readonly retry: Required<RetryPolicy>;
  readonly onFailure: 'dead-letter' | 'block';
  readonly startFrom: 'beginning' | 'now';
  readonly workerId: string;
  readonly closeTransport: boolean;
  readonly onEvent: (event: RelayEvent) => void;
}

const relayName = /^[A-Za-z0-9_][A-Za-z0-9._:-]{0,127}$/;

export function resolveRelayOptions(options: RelayOptions): ResolvedRelayOptions {
  if (typeof options.name !== 'string' || !relayName.test(options.name)) {
    throw new ConfigError('name', `relay name ${JSON.stringify(options.name)} must be 1 to 128 letters, digits, ".", "_", ":" or "-"`);
  }
  if (!options.database || typeof options.database.transaction !== 'function') {
    throw new ConfigError('database', 'pass a Database, e.g. pgDatabase(process.env.DATABASE_URL)');
  }
  const transport = options.transport;
  if (!transport || typeof transport.send !== 'function' || typeof transport.close !== 'function') {
    throw new ConfigError('transport', 'pass a Transport (an object with send(batch, signal) and close())');
  }
  if (options.topics !== undefined && (!Array.isArray(options.topics) || options.topics.some((t) => typeof t !== 'string' || t === ''))) {
    throw new ConfigError('topics', 'expected a list of topic names or prefixes ending in "*"');
  }
  if (options.tenant !== undefined && (typeof options.tenant !== 'string' || options.tenant === '')) {
    throw new ConfigError('tenant', 'expected a non-empty tenant id');
  }
  const leaseTtlMs = positiveInteger('leaseTtlMs', options.leaseTtlMs, 15_000);
  const heartbeatIntervalMs = positiveInteger('heartbeatIntervalMs', options.heartbeatIntervalMs, Math.max(1, Math.floor(leaseTtlMs / 5)));
  if (heartbeatIntervalMs * 2 > leaseTtlMs) {
    throw new ConfigError('heartbeatIntervalMs', `must be at most half of leaseTtlMs (${leaseTtlMs}) so a lease is renewed before it runs out`);
  }
  const transportLimit = transport.capabilities?.maxBatchSize ?? Number.MAX_SAFE_INTEGER;
  const retry = options.retry ?? {};
  const onFailure = options.onFailure ?? 'dead-letter';
  if (onFailure !== 'dead-letter' && onFailure !== 'block') {
    throw new ConfigError('onFailure', `expected "dead-letter" or "block", got ${JSON.stringify(onFailure)}`);
  }
  const startFrom = options.startFrom ?? 'beginning';
  if (startFrom !== 'beginning' && startFrom !== 'now') {
    throw new ConfigError('startFrom', `expected "beginning" or "now", got ${JSON.stringify(startFrom)}`);
  }
  const factor = retry.factor ?? 2;
  if (!(factor >= 1)) throw new ConfigError('retry.factor', `expected a number of at least 1, got ${String(factor)}`);
  return {
    name: options.name,
    database: options.database,
    transport,
    schema: resolveSchema(options.schema),
    topics: options.topics,
    tenant: options.tenant,
    batchSize: Math.min(positiveInteger('batchSize', options.batchSize, 500, 10_000), transportLimit),
    pollIntervalMs: isMutant('notify-only') ? 2 ** 31 - 1 : positiveInteger('pollIntervalMs', options.pollIntervalMs, 1_000),
    leaseTtlMs,
    heartbeatIntervalMs,
    retry: {
      retries: retry.retries === undefined ? 10 : nonNegative('retry.retries', retry.retries),
      minDelayMs: positiveInteger('retry.minDelayMs', retry.minDelayMs, 100),
      maxDelayMs: positiveInteger('retry.maxDelayMs', retry.maxDelayMs, 30_000),
      factor,
    },
    onFailure,
    startFrom,
    workerId: options.workerId ?? `${process.pid}-${Math.random().toString(36).slice(2, 10)}`,
    closeTransport: options.closeTransport ?? true,
    onEvent: options.onEvent ?? (() => {}),
  };
}

function nonNegative(option: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) throw new ConfigError(option, `expected a whole number of at least 0, got ${String(value)}`);
  return value;
}
