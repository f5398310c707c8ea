import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type { FeedEnvelope } from '../feed/envelope.ts';
import type { PollingPage } from '../polling/polling-feed.ts';
import { SseParser, type SseMessage } from '../sse/sse-parser.ts';
import { CountWaiters } from './event-waiters.ts';

/** A raw SSE connection: every frame it received, and the bytes. */
export interface SseReader {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly messages: SseMessage[];
  /** The data of every event that is not a `feed-error`, parsed. */
  readonly events: FeedEnvelope[];
  /** Everything received, as text. */
  raw: string;
  retry: number | undefined;
  /** Resolves when the server ends or breaks the stream. */
  readonly ended: Promise<void>;
  readonly isEnded: () => boolean;
  readonly response: IncomingMessage;
  /** Resolves once `count` events arrived; rejects after `timeoutMs` saying how many did. */
  waitFor(count: number, timeoutMs?: number): Promise<FeedEnvelope[]>;
  close(): void;
}

/**
 * Opens an SSE stream with plain node:http, keeping every frame and byte, for tests of a feed;
 * resolves when the response headers arrive.
 *
 * @example
 * const stream = await openSse(`${origin}/events?after=${cursor}`, { authorization: 'Bearer test' });
 * const events = await stream.waitFor(3);
 * stream.close();
 */
export function openSse(url: string, headers: Record<string, string> = {}): Promise<SseReader> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { accept: 'text/event-stream', ...headers }, agent: false }, (response) => {
      const messages: SseMessage[] = [];
      const events: FeedEnvelope[] = [];
      let ended = false;
      const waiters = new CountWaiters(events, () => ended);
      const reader: SseReader = {
        status: response.statusCode ?? 0,
        headers: response.headers,
        messages,
        events,
        raw: '',
        retry: undefined,
        response,
        ended: new Promise<void>((done) => {
          const finish = (): void => {
            ended = true;
            done();
            waiters.wake();
          };
          response.once('end', finish);
          response.once('close', finish);
          response.once('error', finish);
        }),
        isEnded: () => ended,
        waitFor: (count, timeoutMs = 15_000) => waiters.waitFor(count, timeoutMs),
        close() {
          req.destroy();
        },
      };
      const parser = new SseParser(
        (message) => {
          messages.push(message);
          if (message.event !== 'feed-error') events.push(JSON.parse(message.data) as FeedEnvelope);
        },
        (ms) => (reader.retry = ms),
      );
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        reader.raw += chunk;
        parser.push(chunk);
        waiters.wake();
      });
      resolve(reader);
    });
    req.on('error', reject);
    req.end();
  });
}

/** One answer of the polling feed: status, headers and the parsed body (a page, or an error). */
export interface PollAnswer {
  readonly status: number;
  readonly headers: Headers;
  readonly body: PollingPage & { error?: string; message?: string; cursor?: string };
}

/**
 * One GET of the polling feed at `<origin>/feed` (or the path `origin` names, when it has one).
 *
 * @example
 * const { status, body } = await pollFeed('http://127.0.0.1:3000', { after: 'now' });
 */
export async function pollFeed(origin: string, query: Record<string, string | number>, headers: Record<string, string> = {}): Promise<PollAnswer> {
  const given = new URL(origin);
  const url = given.pathname === '/' ? new URL('/feed', given) : given;
  for (const [name, value] of Object.entries(query)) url.searchParams.set(name, String(value));
  const response = await fetch(url, { headers });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text === '' ? ({} as PollAnswer['body']) : JSON.parse(text) };
}

/** Pages through the polling feed (as `pollFeed` finds it) from `after` until a page is not full; every event, oldest first. */
export async function pollFeedAll(origin: string, after: string, limit = 50, headers: Record<string, string> = {}): Promise<{ events: FeedEnvelope[]; next: string }> {
  const events: FeedEnvelope[] = [];
  let cursor = after;
  for (;;) {
    const { status, body } = await pollFeed(origin, { after: cursor, limit }, headers);
    if (status !== 200) throw new Error(`the polling feed answered ${status}: ${JSON.stringify(body)}`);
    events.push(...body.events);
    cursor = body.next;
    if (!body.hasMore) return { events, next: cursor };
  }
}
