import { asError } from '../shared/backoff.ts';
import { observer, ownStatements } from '@tidings/outbox/internal';
import { wholeOption } from '../shared/options.ts';
import { ConfigError, type Database } from '@tidings/outbox';
import type { SlotLimits } from './connection-slots.ts';
import type { Authorize } from './scope.ts';
import { resolveCloudEvents, type CloudEventsOptions, type ResolvedCloudEvents } from '../shared/cloud-events.ts';

/** What a feed hears that no request can be told about (the LISTEN connection, the shared tail read, a failing request). */
export type FeedEvent = { readonly type: 'error'; readonly error: Error };

/** What the SSE feed and the polling feed are both configured with. */
export interface FeedOptions {
  /**
   * tidings' own handle on the outbox database: feeds read through it and LISTEN on it. Feeds
   * given the same handle share one LISTEN connection and one tail read per process.
   */
  readonly database: Database;
  /** Schema the outbox was migrated into. Default `tidings`. */
  readonly schema?: string;
  /**
   * Required: maps each request to the tenant and topics its caller may read, or refuses it.
   * Return `{}` only where every caller may read every tenant's events.
   */
  readonly authorize: Authorize;
  /** Where a request without a cursor starts. SSE default `now`, polling default `start`. */
  readonly from?: 'start' | 'now';
  /**
   * How often waiting connections look at the log without a NOTIFY: the safety net for a lost
   * notification (NOTIFY is a hint, the table is the truth). One read per process, not per
   * connection. Default 2 000 ms.
   */
  readonly pollIntervalMs?: number;
  /**
   * Hears errors no request can be told about (the LISTEN connection, the shared tail read) and
   * the server-side failures of requests. What it throws is ignored: an observer never breaks a feed.
   */
  readonly onEvent?: (event: FeedEvent) => void;
  /**
   * The most long-lived requests this feed serves at once (SSE streams; long polls, i.e. requests
   * with `?wait=`); one more is answered 429 with `Retry-After`. Default 10 000.
   */
  readonly maxConnections?: number;
  /** The most of those one tenant may hold (callers without a tenant count as one). Default 1 000. */
  readonly maxConnectionsPerTenant?: number;
  /**
   * Send every event as a CloudEvent 1.0 in the structured JSON format (the `data:` of an SSE
   * frame, an item of a polling page) instead of the tidings envelope. Default: off.
   */
  readonly cloudEvents?: CloudEventsOptions;
}

export interface ResolvedFeedOptions {
  readonly database: Database;
  readonly schema: string;
  readonly authorize: Authorize;
  readonly from: 'start' | 'now';
  readonly pollIntervalMs: number;
  readonly onError: (error: unknown) => void;
  readonly limits: SlotLimits;
  readonly cloudEvents: ResolvedCloudEvents | undefined;
}

/** The feed's parts report bare errors; the observer hears them as `error` events. */
function errorsTo(onEvent: (event: FeedEvent) => void): (error: unknown) => void {
  return (error) => onEvent({ type: 'error', error: asError(error) });
}

/** What a refused request is told to wait before it tries again. */
const retryAfterSeconds = 5;

const schemaShape = /^[a-z_][a-z0-9_]{0,62}$/;

export function resolveFeedOptions(options: FeedOptions, defaultFrom: 'start' | 'now'): ResolvedFeedOptions {
  if (typeof options !== 'object' || options === null) throw new ConfigError('options', 'expected an object');
  const { database, authorize } = options;
  if (typeof database?.query !== 'function' || typeof database.listen !== 'function') {
    throw new ConfigError('database', 'expected a tidings Database (for example pgDatabase(url)), which can query and LISTEN');
  }
  if (typeof authorize !== 'function') {
    throw new ConfigError(
      'authorize',
      'expected a function from the request to { tenant?, topics? } or false; pass () => ({}) only for a feed every caller may read whole',
    );
  }
  const schema = options.schema ?? 'tidings';
  if (!schemaShape.test(schema)) throw new ConfigError('schema', `expected a lower-case SQL identifier, got ${JSON.stringify(schema)}`);
  const from = options.from ?? defaultFrom;
  if (from !== 'start' && from !== 'now') throw new ConfigError('from', `expected 'start' or 'now', got ${JSON.stringify(from)}`);
  const cloudEvents = resolveCloudEvents(options.cloudEvents);
  return {
    // Reads of the feed run with the database's statement time limit (pgDatabase's queryTimeoutMs).
    database: ownStatements(database),
    schema,
    authorize,
    from,
    pollIntervalMs: wholeOption('pollIntervalMs', options.pollIntervalMs, 2_000),
    onError: errorsTo(observer(options.onEvent)),
    limits: {
      total: wholeOption('maxConnections', options.maxConnections, 10_000),
      perTenant: wholeOption('maxConnectionsPerTenant', options.maxConnectionsPerTenant, 1_000),
      retryAfterSeconds,
    },
    cloudEvents,
  };
}

