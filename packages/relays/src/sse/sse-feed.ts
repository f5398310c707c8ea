import { wholeOption } from '../shared/options.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { asHttp1, responseGone, type FeedRequest, type FeedResponse } from '../feed/http-types.ts';
import type { FeedPage } from '@tidings/outbox';
import { requestStart } from '../feed/cursor.ts';
import { resolveFeedOptions, type FeedOptions } from '../feed/feed-options.ts';
import { acquireHub } from '../feed/hub-registry.ts';
import { ConnectionSlots } from '../feed/connection-slots.ts';
import { isServerSide, problemHeaders, problemOf, queryOf, sendProblem, type Problem } from '../feed/problem.ts';
import { requestedTopics, resolveScope } from '../feed/scope.ts';
import { SseConnection } from './sse-connection.ts';
import { envelopeFrames, frameEncoder, openingFrame, problemFrame } from './sse-frames.ts';
import { feedEncoding } from '../feed/envelope.ts';
import { wireVersion } from '../shared/cloud-events.ts';

export interface SseFeedOptions extends FeedOptions {
  /** How often a comment line is sent on every stream, so proxies keep idle ones open. Default 15 000 ms. */
  readonly heartbeatMs?: number;
  /** The `retry:` hint: how long EventSource waits before reconnecting. Default 2 000 ms. */
  readonly retryMs?: number;
  /** Events per read while a stream catches up. Default 500. */
  readonly batchSize?: number;
  /**
   * How long a stream may stay unable to take more data (`write()` returned false) before the
   * client is disconnected; it resumes from its cursor. Default 30 000 ms.
   */
  readonly drainTimeoutMs?: number;
}

/** A Server-Sent Events endpoint over the outbox log. */
export interface SseFeed {
  /**
   * The request handler (node:http; Express takes it as is; in Fastify, `reply.hijack()` and pass
   * `request.raw, reply.raw`; node:http2's compatibility API, cleartext or TLS, where many streams
   * share one connection). Answers 405 to anything but GET.
   */
  readonly handle: (request: FeedRequest, response: FeedResponse) => void;
  /** Streams open right now. */
  readonly connections: number;
  /** Ends every stream (clients reconnect elsewhere) and stops the feed's share of the LISTEN. */
  close(): Promise<void>;
}

/**
 * Streams the outbox log as Server-Sent Events: `id:` is the opaque cursor, `event:` the topic,
 * `data:` the JSON envelope (`FeedEnvelope`). A client resumes with the `Last-Event-ID` header
 * (EventSource sends it on every reconnect) or `?after=<cursor>` (`start`, `now`), and may narrow
 * the topics with `?topics=orders.*,billing.paid`. Every stream sees the committed events of its
 * scope exactly in log order, never one of a rolled-back transaction.
 *
 * A malformed cursor, or one out of range or beyond the head of the log, is answered 400, an
 * expired one 410, a refused caller 401/403, a connection beyond `maxConnections` or
 * `maxConnectionsPerTenant` 429 with `Retry-After`: EventSource stops retrying on such a status,
 * and other clients read the reason from the body, an `event: feed-error` frame whose data is a
 * problem (`{ type, title, status, detail, error, message, cursor? }`).
 *
 * @example
 * const feed = sseFeed({
 *   database: pgDatabase(process.env.DATABASE_URL!),
 *   authorize: async (req) => ({ tenant: (await session(req)).tenantId }),
 * });
 * http.createServer((req, res) => (req.url?.startsWith('/events') ? feed.handle(req, res) : app(req, res))).listen(8080);
 * // in the browser:
 * const source = new EventSource('/events?topics=orders.*');
 * source.addEventListener('orders.created', (e) => render(JSON.parse(e.data).payload));
 */
export function sseFeed(options: SseFeedOptions): SseFeed {
  const resolved = resolveFeedOptions(options, 'now');
  const heartbeatMs = wholeOption('heartbeatMs', options.heartbeatMs, 15_000);
  const retryMs = wholeOption('retryMs', options.retryMs, 2_000, 0);
  const batchSize = wholeOption('batchSize', options.batchSize, 500, 1, 10_000);
  const drainTimeoutMs = wholeOption('drainTimeoutMs', options.drainTimeoutMs, 30_000);
  const { hub, release } = acquireHub(resolved.database, {
    schema: resolved.schema,
    pollIntervalMs: resolved.pollIntervalMs,
    batchSize,
    onError: resolved.onError,
  });
  const encoder = resolved.cloudEvents === undefined ? envelopeFrames : frameEncoder(feedEncoding(resolved.cloudEvents));
  const settings = { hub, batchSize, drainTimeoutMs, onError: resolved.onError, encoder };
  const connections = new Set<SseConnection>();
  const slots = new ConnectionSlots(resolved.limits, 'SSE connections');
  let closed = false;
  const heartbeat = setInterval(() => {
    for (const connection of connections) connection.heartbeat();
  }, heartbeatMs).unref();

  async function open(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (request.method !== 'GET') {
      response.writeHead(405, { Allow: 'GET', 'Content-Type': 'text/plain; charset=utf-8' }).end('use GET\n');
      return;
    }
    if (closed) return refuse(request, response, { status: 503, error: 'unavailable', message: 'the feed is shutting down' });
    let scope;
    let first: FeedPage;
    try {
      const query = queryOf(request);
      const topics = requestedTopics(query);
      const start = requestStart(request, query, resolved.from);
      scope = await resolveScope(resolved.authorize, request, topics);
      // Held from here until the response closes, however it ends (refused, finished, client gone).
      slots.holdFor(response, scope.tenant);
      await hub.checkStart(start);
      // Read before answering, so that a bad or expired cursor still gets a proper status.
      // Identical reads of a burst of connections share one query.
      first = await hub.read(scope, start, batchSize, false);
    } catch (error) {
      const problem = problemOf(error);
      if (isServerSide(problem)) resolved.onError(error);
      return refuse(request, response, problem);
    }
    if (responseGone(response) || closed) return;
    const connection = new SseConnection(response, scope, first.next, settings);
    connections.add(connection);
    connection.onClosed(() => connections.delete(connection));
    request.socket.setNoDelay(true);
    request.socket.setTimeout(0);
    response.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      'X-Accel-Buffering': 'no',
      'Tidings-Wire-Version': wireVersion,
      ...(request.httpVersionMajor < 2 ? { Connection: 'keep-alive' } : {}),
    });
    response.write(openingFrame(retryMs));
    connection.start(first);
  }

  return {
    handle(http, reply) {
      const [request, response] = asHttp1(http, reply);
      open(request, response).catch((error: unknown) => {
        resolved.onError(error);
        if (!response.headersSent) refuse(request, response, problemOf(error));
        else response.destroy();
      });
    },
    get connections() {
      return connections.size;
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(heartbeat);
      for (const connection of connections) connection.end();
      await release();
    },
  };
}

/**
 * An error status with the reason: in an `event: feed-error` frame (EventSource stops retrying on
 * the status; other stream clients read the frame), or as `application/problem+json` to a client
 * that asks for JSON and not for an event stream.
 */
function refuse(request: IncomingMessage, response: ServerResponse, problem: Problem): void {
  if (response.headersSent || responseGone(response)) return;
  if (wantsJson(request.headers.accept)) return sendProblem(response, problem);
  const body = problemFrame(problem);
  response.writeHead(problem.status, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-store',
    'Content-Length': Buffer.byteLength(body),
    ...problemHeaders(problem),
  });
  response.end(body);
}

/** Whether `Accept` names a JSON type and not `text/event-stream`. */
function wantsJson(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  const types = accept.split(',').map((part) => part.split(';')[0]!.trim().toLowerCase());
  return !types.includes('text/event-stream') && (types.includes('application/problem+json') || types.includes('application/json'));
}
