import { ConfigError } from '../errors.ts';
import type { Database } from '../executor.ts';
import { wholeOption, resolveSchema } from '../options.ts';
import type { Transport } from '../transport.ts';
import { ownStatements } from '../own-statements.ts';

/**
 * How often an event the destination refused (`retry`) is tried again before it becomes a dead
 * letter. The same delays pace the waits for an unavailable destination, which are never counted:
 * an outage of any length makes no dead letter.
 */
export interface RetryPolicy {
  /** Retries after the first attempt of a refused event. Default 10. */
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
  /** The destination refused the event; `attempt` counts toward `retry.retries`. */
  | { readonly type: 'retry'; readonly partition: number; readonly eventId: string; readonly attempt: number; readonly delayMs: number; readonly error: Error }
  /** The destination is unavailable; the partition waits `delayMs` and counts nothing against the event. */
  | { readonly type: 'unavailable'; readonly partition: number; readonly eventId: string; readonly attempt: number; readonly delayMs: number; readonly error: Error }
  /** The destination answered again after `unavailableMs` of outage. */
  | { readonly type: 'available'; readonly partition: number; readonly unavailableMs: number }
  | { readonly type: 'dead-letter'; readonly partition: number; readonly eventId: string; readonly error: Error }
  /** `key`'s later events wait behind the dead letter `eventId` (onFailure `park`). */
  | { readonly type: 'key-parked'; readonly partition: number; readonly key: string; readonly eventId: string }
  /** The dead letter `key` waited behind was retried or discarded, and its parked events were delivered. */
  | { readonly type: 'key-released'; readonly partition: number; readonly key: string; readonly delivered: number }
  | { readonly type: 'lease-acquired' | 'lease-released' | 'lease-lost'; readonly partition: number }
  | { readonly type: 'error'; readonly partition?: number; readonly error: Error };

/** What a relay does with an event the destination refuses for good; see `RelayOptions.onFailure`. */
export type FailureMode = (typeof failureModes)[number];

/** Every `onFailure` a relay accepts. */
export const failureModes = ['park', 'block', 'skip-unordered'] as const;

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
   * When the destination refuses an event for good (its retries ran out, or `failed`):
   * - `park` (default): it becomes a dead letter and its key is parked: the key's later events
   *   wait behind it (stored, across restarts) while every other key flows; retrying the dead
   *   letter delivers it and then them in order, discarding it releases them. A keyless event's
   *   dead letter parks nothing.
   * - `block`: it is retried for ever and its whole partition waits, so nothing overtakes it.
   * - `skip-unordered`: it becomes a dead letter and its key's later events go on without it,
   *   which gives up per-key order for that key.
   * An unavailable destination never counts against an event, whatever this says.
   */
  readonly onFailure?: FailureMode;
  /** Where a new relay starts: the beginning of the log (default) or the events written from now. */
  readonly startFrom?: 'beginning' | 'now';
  /** This worker's id; default a random one. Must be unique among the relay's live workers. */
  readonly workerId?: string;
  /** Close the transport when the relay stops. Default true. */
  readonly closeTransport?: boolean;
  /** Hears what the relay does. What it throws is ignored: an observer never breaks delivery. */
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
  readonly onFailure: FailureMode;
  readonly startFrom: 'beginning' | 'now';
  readonly workerId: string;
  readonly closeTransport: boolean;
  readonly onEvent: (event: RelayEvent) => void;
}

const relayName = /^[A-Za-z0-9_][A-Za-z0-9._:-]{0,127}$/;

/**
 * Checks `options` and fills in the defaults. `createRelay` imports it as `#relay-options` (see
 * package.json `imports`), the module the relay's test mutants replace.
 */
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
  const leaseTtlMs = wholeOption('leaseTtlMs', options.leaseTtlMs, 15_000);
  const heartbeatIntervalMs = wholeOption('heartbeatIntervalMs', options.heartbeatIntervalMs, Math.max(1, Math.floor(leaseTtlMs / 5)));
  if (heartbeatIntervalMs * 2 > leaseTtlMs) {
    throw new ConfigError('heartbeatIntervalMs', `must be at most half of leaseTtlMs (${leaseTtlMs}) so a lease is renewed before it runs out`);
  }
  const transportLimit = transport.capabilities?.maxBatchSize ?? Number.MAX_SAFE_INTEGER;
  const retry = options.retry ?? {};
  const onFailure = options.onFailure ?? 'park';
  if ((onFailure as string) === 'dead-letter') {
    throw new ConfigError(
      'onFailure',
      '"dead-letter" is no longer a mode: use "park" (the default: dead-letter and keep the key\'s later events behind it, in order) ' +
        'or "skip-unordered" (dead-letter and let the key\'s later events go on, giving up its order)',
    );
  }
  if (!failureModes.includes(onFailure)) {
    throw new ConfigError('onFailure', `expected "park", "block" or "skip-unordered", got ${JSON.stringify(onFailure)}`);
  }
  const startFrom = options.startFrom ?? 'beginning';
  if (startFrom !== 'beginning' && startFrom !== 'now') {
    throw new ConfigError('startFrom', `expected "beginning" or "now", got ${JSON.stringify(startFrom)}`);
  }
  const factor = retry.factor ?? 2;
  if (!(factor >= 1)) throw new ConfigError('retry.factor', `expected a number of at least 1, got ${String(factor)}`);
  return {
    name: options.name,
    database: ownStatements(options.database),
    transport,
    schema: resolveSchema(options.schema),
    topics: options.topics,
    tenant: options.tenant,
    batchSize: Math.min(wholeOption('batchSize', options.batchSize, 500, 1, 10_000), transportLimit),
    pollIntervalMs: wholeOption('pollIntervalMs', options.pollIntervalMs, 1_000),
    leaseTtlMs,
    heartbeatIntervalMs,
    retry: {
      retries: retry.retries === undefined ? 10 : wholeOption('retry.retries', retry.retries, 10, 0),
      minDelayMs: wholeOption('retry.minDelayMs', retry.minDelayMs, 100),
      maxDelayMs: wholeOption('retry.maxDelayMs', retry.maxDelayMs, 30_000),
      factor,
    },
    onFailure,
    startFrom,
    workerId: options.workerId ?? `${process.pid}-${Math.random().toString(36).slice(2, 10)}`,
    closeTransport: options.closeTransport ?? true,
    onEvent: safeObserver(options.onEvent),
  };
}

/** The relay's observer, made safe: what it throws is ignored, so it never breaks delivery. */
function safeObserver(onEvent: ((event: RelayEvent) => void) | undefined): (event: RelayEvent) => void {
  return (event) => {
    try {
      onEvent?.(event);
    } catch {
      // The observer's failure is its own.
    }
  };
}
