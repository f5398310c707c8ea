import type { Inbox } from '@tidings/inbox';
import { ConfigError } from '@tidings/outbox';
import type { FeedEnvelope } from './envelope.ts';
import { whole } from './feed-options.ts';

/**
 * Runs a function in a transaction of the consumer's own database and commits it (rolls back when
 * it throws). A tidings `Database` is one; for kysely pass
 * `{ transaction: (fn) => db.transaction().execute(fn) }`.
 */
export interface TransactionRunner<Trx> {
  transaction<T>(fn: (trx: Trx) => Promise<T>): Promise<T>;
}

/** What both feed consumers are configured with. */
export interface FeedConsumerOptions<Trx> {
  /** The feed endpoint, with any fixed query such as `?topics=orders.*`. */
  readonly url: string | URL;
  /** The consumer's own database: each event's effects and the cursor commit in one transaction. */
  readonly database: TransactionRunner<Trx>;
  /** The consumer's inbox (`inbox({ consumer: 'billing' })`): it keeps the checkpoint. */
  readonly inbox: Inbox;
  /** The checkpoint's name. Default: the URL. Changing it restarts the consumer from `from`. */
  readonly source?: string;
  /**
   * Applies one event inside `trx`, the transaction that also stores the cursor. If it throws,
   * both roll back and the event is tried again after a backoff (order is kept, so a failing
   * event holds back the ones after it).
   */
  readonly handle: (event: FeedEnvelope, trx: Trx) => unknown;
  /** Where a consumer without a checkpoint starts. Default `start`. */
  readonly from?: 'start' | 'now';
  /** Extra request headers, e.g. `authorization`; a function is called before every request. */
  readonly headers?: Record<string, string> | (() => Record<string, string> | Promise<Record<string, string>>);
  /** Reconnect/retry backoff: exponential with jitter from `initialMs` (default 250) to `maxMs` (default 30 000). */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Hears every failure that will be retried (connection lost, 5xx, handler errors). */
  readonly onError?: (error: unknown) => void;
  /** A `fetch` to use instead of the global one. */
  readonly fetch?: typeof fetch;
}

export interface ResolvedConsumerOptions<Trx> {
  readonly url: string;
  readonly database: TransactionRunner<Trx>;
  readonly inbox: Inbox;
  readonly source: string;
  readonly handle: (event: FeedEnvelope, trx: Trx) => unknown;
  readonly from: 'start' | 'now';
  readonly headers: () => Promise<Record<string, string>>;
  readonly initialMs: number;
  readonly maxMs: number;
  readonly onError: (error: unknown) => void;
  readonly fetch: typeof fetch;
}

export function resolveConsumerOptions<Trx>(options: FeedConsumerOptions<Trx>): ResolvedConsumerOptions<Trx> {
  const url = new URL(options.url).toString();
  if (typeof options.database?.transaction !== 'function') {
    throw new ConfigError('database', 'expected an object with transaction(fn), such as a tidings Database');
  }
  if (typeof options.inbox?.saveCheckpoint !== 'function') throw new ConfigError('inbox', "expected an inbox, e.g. inbox({ consumer: 'billing' })");
  if (typeof options.handle !== 'function') throw new ConfigError('handle', 'expected a function (event, trx) => effects');
  const from = options.from ?? 'start';
  if (from !== 'start' && from !== 'now') throw new ConfigError('from', `expected 'start' or 'now', got ${JSON.stringify(from)}`);
  const initialMs = whole('backoff.initialMs', options.backoff?.initialMs, 250);
  const headers = options.headers;
  return {
    url,
    database: options.database,
    inbox: options.inbox,
    source: options.source ?? url,
    handle: options.handle,
    from,
    headers: async () => (typeof headers === 'function' ? await headers() : (headers ?? {})),
    initialMs,
    maxMs: whole('backoff.maxMs', options.backoff?.maxMs, Math.max(30_000, initialMs), initialMs),
    onError: options.onError ?? (() => {}),
    fetch: options.fetch ?? fetch,
  };
}
