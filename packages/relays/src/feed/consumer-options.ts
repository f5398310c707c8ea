import { ConfigError } from '@tidings/outbox';
import { resolveCommon, resolveRetry, type ConsumerOptions, type FeedDelivery, type ResolvedCommon, type RetryOptions } from '../shared/consumer.ts';
import { wholeOption } from '../shared/options.ts';
import type { TransactionSource } from '../shared/transaction-source.ts';

/** Something a feed consumer did; for logs, metrics and tests. */
export type FeedConsumerEvent =
  | { readonly type: 'connected' }
  /** A connection ended with a failure that asking again may cure (lost connection, 5xx, 429); it reconnects after `delayMs`. */
  | { readonly type: 'disconnected'; readonly error: Error; readonly delayMs: number }
  /** The handler's effects and the cursor after the event committed together. */
  | { readonly type: 'committed'; readonly eventId: string; readonly attempt: number; readonly cursor: string }
  /** The handler failed; the event is tried again after `delayMs`, the events after it waiting (order is kept). */
  | { readonly type: 'retry-scheduled'; readonly eventId: string; readonly attempt: number; readonly delayMs: number; readonly error: Error }
  /** Something failed that is not the handler's doing (the database, another worker moving the checkpoint); it is retried. */
  | { readonly type: 'error'; readonly error: Error };

/** What both feed consumers are configured with. */
export interface FeedConsumerOptions<Source extends TransactionSource> extends ConsumerOptions<Source, FeedDelivery, FeedConsumerEvent> {
  /** The feed endpoint, with any fixed query such as `?topics=orders.*`. */
  readonly url: string | URL;
  /** The checkpoint's name (kept per `consumer`). Default: the URL. Changing it restarts the consumer from `from`. */
  readonly source?: string;
  /** Where a consumer without a checkpoint starts. Default `start`. */
  readonly from?: 'start' | 'now';
  /** Extra request headers, e.g. `authorization`; a function is called before every request. */
  readonly headers?: Record<string, string> | (() => Record<string, string> | Promise<Record<string, string>>);
  /**
   * A failing handler is retried after `minDelayMs` (default 250) doubling up to `maxDelayMs`
   * (default 30 000), the events after it waiting: a feed keeps order and has no dead letters. By
   * default it retries forever; with `attempts`, the consumer stops after that many runs of the
   * handler on one event and `done` rejects with `HandlerFailedError`.
   */
  readonly retry?: RetryOptions;
  /** Delays between reconnections after a failed connection: exponential with jitter. Default 250 to 30 000 ms. */
  readonly reconnect?: { readonly minDelayMs?: number; readonly maxDelayMs?: number };
  /** A `fetch` to use instead of the global one. */
  readonly fetch?: typeof fetch;
}

export interface ResolvedConsumerOptions<Source extends TransactionSource> extends ResolvedCommon<Source, FeedDelivery, FeedConsumerEvent> {
  readonly url: string;
  readonly source: string;
  readonly from: 'start' | 'now';
  readonly headers: () => Promise<Record<string, string>>;
  readonly retry: { readonly attempts: number; readonly minDelayMs: number; readonly maxDelayMs: number };
  readonly reconnect: { readonly minDelayMs: number; readonly maxDelayMs: number };
  readonly fetch: typeof fetch;
}

export function resolveConsumerOptions<Source extends TransactionSource>(options: FeedConsumerOptions<Source>): ResolvedConsumerOptions<Source> {
  const common = resolveCommon(options, 'url, consumer, database and handler');
  let url: string;
  try {
    url = new URL(options.url).toString();
  } catch {
    throw new ConfigError('url', `expected the feed's absolute URL, got ${JSON.stringify(String(options.url))}`);
  }
  const from = options.from ?? 'start';
  if (from !== 'start' && from !== 'now') throw new ConfigError('from', `expected 'start' or 'now', got ${JSON.stringify(from)}`);
  if (options.source !== undefined && (typeof options.source !== 'string' || options.source === '')) {
    throw new ConfigError('source', `expected a checkpoint name, got ${JSON.stringify(options.source)}`);
  }
  const minDelayMs = wholeOption('reconnect.minDelayMs', options.reconnect?.minDelayMs, 250);
  const headers = options.headers;
  return {
    ...common,
    url,
    source: options.source ?? url,
    from,
    headers: async () => (typeof headers === 'function' ? await headers() : (headers ?? {})),
    retry: resolveRetry(options.retry, { attempts: Infinity, minDelayMs: 250, maxDelayMs: 30_000 }),
    reconnect: { minDelayMs, maxDelayMs: wholeOption('reconnect.maxDelayMs', options.reconnect?.maxDelayMs, Math.max(30_000, minDelayMs), minDelayMs) },
    fetch: options.fetch ?? fetch,
  };
}
