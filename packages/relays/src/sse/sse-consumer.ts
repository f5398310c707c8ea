import { resolveConsumerOptions, type FeedConsumerOptions } from '../feed/consumer-options.ts';
import { feedEnvelopeOf } from '../feed/envelope.ts';
import { FeedResponseError } from '../feed/errors.ts';
import { wholeOption } from '../shared/options.ts';
import { runConsumer, type FeedConsumer, type Session } from '../feed/feed-consumer.ts';
import type { TransactionSource } from '../shared/transaction-source.ts';
import { parseProblem, problemError, responseError } from '../feed/response-error.ts';
import { feedErrorEvent } from './sse-frames.ts';
import { defaultMaxSseLength, SseParser, type SseMessage } from './sse-parser.ts';

export interface SseConsumerOptions<Source extends TransactionSource> extends FeedConsumerOptions<Source> {
  /**
   * A stream that sends nothing, not even a heartbeat, for this long is taken for dead and
   * reopened. Default 45 000 ms (three of the feed's default heartbeats).
   */
  readonly idleTimeoutMs?: number;
  /**
   * The most characters one line of the stream, and the data of one event, may hold. A stream
   * that sends more is closed with `SseLimitError` (heard by `onEvent` as `disconnected`) and opened again after a
   * backoff, so a broken or hostile server cannot grow the consumer's memory without bound.
   * Default 8 Mi.
   */
  readonly maxEventLength?: number;
}

/**
 * Follows an SSE feed and applies each event exactly once: the handler's effects and the event's
 * cursor commit in one transaction of the consumer's database (the inbox checkpoint), and every
 * (re)connection resumes with `Last-Event-ID` = the committed cursor. A crash at any point leaves
 * both applied or neither. Reconnects with exponential backoff and jitter; honours the server's
 * `retry:` after a clean close; stops for good on an expired or malformed cursor or a refusal.
 *
 * @example
 * const consumer = sseConsumer({
 *   url: 'https://orders.internal/events?topics=orders.*',
 *   consumer: 'billing',
 *   database: pgDatabase(process.env.DATABASE_URL!), // the handler gets an Executor
 *   headers: async () => ({ authorization: `Bearer ${await token()}` }),
 *   handler: (trx, event) => trx.query('INSERT INTO invoices (order_id) VALUES ($1)', [(event.payload as { id: string }).id]),
 * });
 * process.on('SIGTERM', () => void consumer.close());
 * await consumer.done;
 */
export function sseConsumer<Source extends TransactionSource>(options: SseConsumerOptions<Source>): FeedConsumer {
  const resolved = resolveConsumerOptions(options);
  const idleTimeoutMs = wholeOption('idleTimeoutMs', options.idleTimeoutMs, 45_000);
  const maxLength = wholeOption('maxEventLength', options.maxEventLength, defaultMaxSseLength);
  return runConsumer(resolved, 'sse', async (session) => {
    const url = new URL(resolved.url);
    if (session.cursor === null) url.searchParams.set('after', resolved.from);
    const headers: Record<string, string> = { accept: 'text/event-stream', 'cache-control': 'no-cache', ...(await resolved.headers()) };
    if (session.cursor !== null) headers['last-event-id'] = session.cursor;
    const idle = new AbortController();
    const signal = AbortSignal.any([session.signal, idle.signal]);
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => idle.abort(new Error(`the stream sent nothing for ${idleTimeoutMs} ms`)), idleTimeoutMs);
    };
    try {
      arm();
      const response = await resolved.fetch(url, { headers, signal });
      if (!response.ok) throw await responseError(resolved.url, response);
      if (!response.headers.get('content-type')?.startsWith('text/event-stream') || !response.body) {
        await response.body?.cancel();
        throw new FeedResponseError(resolved.url, response.status, undefined, 'the answer is not a text/event-stream');
      }
      let retryMs: number | undefined;
      const messages: SseMessage[] = [];
      const parser = new SseParser((message) => messages.push(message), (ms) => (retryMs = ms), { maxLength });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          arm();
          parser.push(value);
          for (const message of messages.splice(0)) await apply(session, resolved.url, message);
          session.progressed();
        }
      } finally {
        reader.releaseLock();
        await response.body.cancel().catch(() => {});
      }
      return { reconnectAfterMs: retryMs ?? resolved.reconnect.minDelayMs };
    } catch (error) {
      throw idle.signal.aborted && error === idle.signal.reason ? idle.signal.reason : error;
    } finally {
      clearTimeout(timer);
    }
  });
}

async function apply(session: Session, url: string, message: SseMessage): Promise<void> {
  if (message.event === feedErrorEvent) {
    const problem = parseProblem(message.data);
    const status = problem?.error === 'cursor-expired' ? 410 : problem?.error === 'invalid-cursor' ? 400 : 503;
    throw problemError(url, status, problem);
  }
  const envelope = feedEnvelopeOf(JSON.parse(message.data));
  if (envelope === undefined) {
    throw new FeedResponseError(url, 200, undefined, `event ${JSON.stringify(message.lastEventId)} is not a tidings envelope`);
  }
  await session.apply(envelope);
}
