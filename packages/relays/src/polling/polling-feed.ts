import { wholeOption } from '../shared/options.ts';
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { asHttp1, responseGone, type FeedRequest, type FeedResponse } from '../feed/http-types.ts';
import type { FeedPage, OutboxEvent, Position } from '@tidings/outbox';
import { cursorText, requestStart } from '../feed/cursor.ts';
import type { FeedEnvelope } from '../feed/envelope.ts';
import { feedEncoding } from '../feed/envelope.ts';
import { wireVersion } from '../shared/cloud-events.ts';
import { resolveFeedOptions, type FeedOptions } from '../feed/feed-options.ts';
import { ConnectionSlots } from '../feed/connection-slots.ts';
import { acquireHub } from '../feed/hub-registry.ts';
import { integerParameter, isServerSide, problemOf, queryOf, sendProblem } from '../feed/problem.ts';
import { requestedTopics, resolveScope, type ResolvedScope } from '../feed/scope.ts';
import { LongPoll } from './long-poll.ts';

export interface PollingFeedOptions extends FeedOptions {
  /** Events per page when the request gives no `?limit=`. Default 100. */
  readonly defaultLimit?: number;
  /** The largest `?limit=` accepted. Default 1 000. */
  readonly maxLimit?: number;
  /** The longest `?wait=` accepted, in seconds. Default 30. */
  readonly maxWaitSeconds?: number;
}

/** The body of a polling feed's answer. */
export interface PollingPage {
  /** Oldest first. With the `cloudEvents` option each item is a CloudEvent in the JSON format instead (see the README's "Wire format"). */
  readonly events: readonly FeedEnvelope[];
  /** Opaque cursor: ask for `?after=<next>` to continue, also when `events` is empty. */
  readonly next: string;
  /** The page is full: more events are waiting now, so ask again at once. */
  readonly hasMore: boolean;
}

/** An HTTP polling endpoint over the outbox log. */
export interface PollingFeed {
  /** The request handler (node:http, Express as is, or node:http2's compatibility API). Answers 405 to anything but GET. */
  readonly handle: (request: FeedRequest, response: FeedResponse) => void;
  /** Long-poll requests waiting right now. */
  readonly waiting: number;
  /** Answers the waiting requests with what there is, and stops the feed's share of the LISTEN. */
  close(): Promise<void>;
}

/**
 * Serves the outbox log as pages: `GET ?after=<cursor>&limit=100` answers `{ events, next,
 * hasMore }` (`PollingPage`), oldest first, in the one order every reader sees, with committed
 * events only. `?after=` also takes `start` and `now`; `?topics=orders.*` narrows the topics.
 * `?wait=<seconds>` makes an empty page wait for the first events (long poll). Each page carries
 * a weak `ETag` naming its events, and a request whose `If-None-Match` names the page it would get
 * is answered 304 (with `?wait=`, once the wait is over and still nothing new came).
 * A malformed cursor, or one out of range or beyond the head of the log, is answered 400, an
 * expired one 410, a refused caller 401/403, a long poll beyond `maxConnections` or
 * `maxConnectionsPerTenant` 429 with `Retry-After`, all with an `application/problem+json` body
 * `{ type, title, status, detail, error, message, cursor? }`.
 *
 * @example
 * const feed = pollingFeed({ database, authorize: (req) => ({ tenant: tenantOf(req) }) });
 * app.get('/feed', feed.handle);
 * // a client:
 * let after = 'start';
 * for (;;) {
 *   const page = await (await fetch(`${base}/feed?after=${after}&wait=25`)).json();
 *   for (const event of page.events) await apply(event);
 *   after = page.next;
 * }
 */
export function pollingFeed(options: PollingFeedOptions): PollingFeed {
  const resolved = resolveFeedOptions(options, 'start');
  const maxLimit = wholeOption('maxLimit', options.maxLimit, 1_000, 1, 10_000);
  const defaultLimit = wholeOption('defaultLimit', options.defaultLimit, Math.min(100, maxLimit), 1, maxLimit);
  const maxWaitSeconds = wholeOption('maxWaitSeconds', options.maxWaitSeconds, 30, 0, 3_600);
  const { hub, release } = acquireHub(resolved.database, {
    schema: resolved.schema,
    pollIntervalMs: resolved.pollIntervalMs,
    batchSize: maxLimit,
    onError: resolved.onError,
  });
  const encode = feedEncoding(resolved.cloudEvents);
  const waiting = new Set<LongPoll>();
  const slots = new ConnectionSlots(resolved.limits, 'long polls');
  let closed = false;

  async function serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (request.method !== 'GET') {
      response.writeHead(405, { Allow: 'GET', 'Content-Type': 'text/plain; charset=utf-8' }).end('use GET\n');
      return;
    }
    let page: FeedPage | undefined;
    let afterText = '';
    try {
      const query = queryOf(request);
      const topics = requestedTopics(query);
      const start = requestStart(request, query, resolved.from, false);
      afterText = typeof start === 'string' ? start : cursorText(start);
      const limit = integerParameter(query, 'limit', defaultLimit, 1, maxLimit);
      const waitSeconds = closed ? 0 : integerParameter(query, 'wait', 0, 0, maxWaitSeconds);
      const scope = await resolveScope(resolved.authorize, request, topics);
      // A long poll holds a slot until its response closes, however it ends.
      if (waitSeconds > 0) slots.holdFor(response, scope.tenant);
      await hub.checkStart(start);
      page = await hub.read(scope, start, limit);
      if (waitSeconds > 0 && page.events.length === 0) {
        page = await longPoll(scope, page.next, limit, waitSeconds * 1000, response);
        if (page === undefined) return;
      }
    } catch (error) {
      const problem = problemOf(error);
      if (isServerSide(problem)) resolved.onError(error);
      sendProblem(response, problem);
      return;
    }
    sendPage(request, response, page!, afterText, encode);
  }

  async function longPoll(scope: ResolvedScope, cursor: Position, limit: number, waitMs: number, response: ServerResponse) {
    const poll = new LongPoll(hub, scope, cursor, limit);
    waiting.add(poll);
    const gone = (): void => poll.finish();
    response.once('close', gone);
    try {
      const page = await poll.wait(waitMs);
      return responseGone(response) ? undefined : page;
    } finally {
      waiting.delete(poll);
      response.off('close', gone);
    }
  }

  return {
    handle(http, reply) {
      const [request, response] = asHttp1(http, reply);
      serve(request, response).catch((error: unknown) => {
        resolved.onError(error);
        if (!response.headersSent) sendProblem(response, problemOf(error));
        else response.destroy();
      });
    },
    get waiting() {
      return waiting.size;
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const poll of waiting) poll.finish();
      await release();
    },
  };
}

/**
 * The ETag is weak and names the page's events (and the request's cursor), not its `next`: a page
 * without new events is the same answer even though `next` moved with the feed's horizon, which
 * it does whenever a transaction commits events.
 */
function sendPage(request: IncomingMessage, response: ServerResponse, page: FeedPage, after: string, encode: (event: OutboxEvent) => string): void {
  const body = `{"events":[${page.events.map((event) => encode(event)).join(',')}],"next":${JSON.stringify(cursorText(page.next))},"hasMore":${page.hasMore}}`;
  const hash = createHash('sha1').update(after);
  for (const event of page.events) hash.update(`|${event.eventId}`);
  const etag = `W/"${hash.update(`|${page.hasMore}`).digest('base64url')}"`;
  const headers = { 'Cache-Control': 'no-cache', ETag: etag, 'Tidings-Wire-Version': wireVersion };
  if (matches(request.headers['if-none-match'], etag)) {
    response.writeHead(304, headers).end();
    return;
  }
  response.writeHead(200, { ...headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  response.end(body);
}

/** `If-None-Match` by the weak comparison RFC 9110 prescribes for it. */
function matches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  const opaque = (tag: string): string => tag.trim().replace(/^W\//, '');
  return header.split(',').some((tag) => opaque(tag) === opaque(etag));
}
