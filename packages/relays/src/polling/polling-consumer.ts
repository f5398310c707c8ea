import { pause } from '../shared/backoff.ts';
import { resolveConsumerOptions, type FeedConsumerOptions } from '../feed/consumer-options.ts';
import { FeedResponseError } from '../feed/errors.ts';
import { wholeOption } from '../shared/options.ts';
import { runConsumer, type FeedConsumer } from '../feed/feed-consumer.ts';
import type { TransactionSource } from '../shared/transaction-source.ts';
import { responseError } from '../feed/response-error.ts';
import type { PollingPage } from './polling-feed.ts';
import { feedEnvelopeOf } from '../feed/envelope.ts';

export interface PollingConsumerOptions<Source extends TransactionSource> extends FeedConsumerOptions<Source> {
  /** Events per page. Default 100. */
  readonly limit?: number;
  /** Long-poll: how long the server may hold a request that has nothing yet. Default 25 s; 0 polls plainly. */
  readonly waitSeconds?: number;
  /** Pause after an empty page when `waitSeconds` is 0. Default 1 000 ms. */
  readonly intervalMs?: number;
}

/**
 * Follows a polling feed and applies each event exactly once: the handler's effects and the cursor
 * commit in one transaction of the consumer's database (the inbox checkpoint), and every request
 * continues from the committed cursor, so a crash at any point leaves both applied or neither.
 * Long-polls by default; retries with exponential backoff and jitter; stops for good on an
 * expired or malformed cursor or a refusal.
 *
 * @example
 * const consumer = pollingConsumer({
 *   url: 'https://orders.internal/feed?topics=orders.*',
 *   consumer: 'search-index',
 *   database: pgDatabase(process.env.DATABASE_URL!), // the handler gets an Executor
 *   handler: (trx, event) => trx.query('INSERT INTO search_docs (id, doc) VALUES ($1, $2)', [event.key, event.payload]),
 * });
 */
export function pollingConsumer<Source extends TransactionSource>(options: PollingConsumerOptions<Source>): FeedConsumer {
  const resolved = resolveConsumerOptions(options);
  const limit = wholeOption('limit', options.limit, 100, 1, 10_000);
  const waitSeconds = wholeOption('waitSeconds', options.waitSeconds, 25, 0, 3_600);
  const intervalMs = wholeOption('intervalMs', options.intervalMs, 1_000, 0);
  return runConsumer(resolved, 'polling', async (session) => {
    const headers = { accept: 'application/json', ...(await resolved.headers()) };
    while (!session.signal.aborted) {
      const url = new URL(resolved.url);
      url.searchParams.set('after', session.cursor ?? resolved.from);
      url.searchParams.set('limit', String(limit));
      if (waitSeconds > 0) url.searchParams.set('wait', String(waitSeconds));
      // A request the server should have answered long ago is stuck somewhere between: give up on it.
      const signal = AbortSignal.any([session.signal, AbortSignal.timeout(waitSeconds * 1000 + 30_000)]);
      const response = await resolved.fetch(url, { headers, signal });
      if (!response.ok) throw await responseError(resolved.url, response);
      const page = validPage(resolved.url, await response.json());
      session.progressed();
      const last = page.events.length - 1;
      for (const [i, event] of page.events.entries()) await session.apply(event, i === last ? page.next : event.cursor);
      session.advance(page.next);
      if (page.events.length === 0 && waitSeconds === 0) await pause(intervalMs, session.signal);
    }
    return {};
  });
}

function validPage(url: string, body: unknown): PollingPage {
  const page = body as PollingPage | null;
  if (typeof page !== 'object' || page === null || !Array.isArray(page.events) || typeof page.next !== 'string') {
    throw new FeedResponseError(url, 200, undefined, 'the answer is not a polling page { events, next, hasMore }');
  }
  // Items are tidings envelopes, or CloudEvents from a feed with the cloudEvents option.
  const events = page.events.map((item, i) => {
    const envelope = feedEnvelopeOf(item);
    if (envelope === undefined) throw new FeedResponseError(url, 200, undefined, `item ${i} of the page is neither a tidings envelope nor a tidings CloudEvent`);
    return envelope;
  });
  return { ...page, events };
}
