import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { RawData, WebSocket } from 'ws';
import { parseStart } from '../feed/cursor.ts';
import { feedEncoding } from '../feed/envelope.ts';
import { acquireHub } from '../feed/hub-registry.ts';
import { ConnectionSlots } from '../feed/connection-slots.ts';
import { resolveFeedOptions, type FeedOptions } from '../feed/feed-options.ts';
import { isServerSide, problemOf } from '../feed/problem.ts';
import { resolveScope, type ResolvedScope } from '../feed/scope.ts';
import { requirePackage } from '../shared/optional-package.ts';
import { wholeOption } from '../shared/options.ts';
import { WebSocketConnection } from './websocket-connection.ts';
import {
  ClientMessageError,
  closeCodes,
  errorMessage,
  eventMessages,
  maxClientMessageBytes,
  parseClientMessage,
  problemCloseCode,
  websocketFeature,
  type SubscribeMessage,
} from './websocket-protocol.ts';

export interface WebSocketFeedOptions extends FeedOptions {
  /**
   * The most events sent to one connection and not yet acknowledged; a subscription may ask for
   * fewer. Default 100.
   */
  readonly maxInFlight?: number;
  /**
   * How often every connection is pinged (a WebSocket ping frame, answered by every browser and
   * client library). A connection that has not answered the previous ping by the next one (with
   * a pong echoing the ping's random data, as the protocol asks) is taken for dead and terminated;
   * its slot frees up. A connection that has not sent `subscribe`
   * within this time is closed (4400). Default 15 000 ms.
   */
  readonly heartbeatMs?: number;
  /** Events per read while a connection catches up. Default 500. */
  readonly batchSize?: number;
}

/** What the feed keeps per socket: whether it answered the last ping, and its subscription once it runs. */
interface SocketState {
  alive: boolean;
  /** The data of the last ping, which its pong must echo. */
  ping?: Buffer;
  connection?: WebSocketConnection;
}

/** A WebSocket endpoint over the outbox log. */
export interface WebSocketFeed {
  /**
   * Takes an HTTP upgrade request: pass it the arguments of node:http's `upgrade` event for the
   * path you serve the feed at.
   */
  readonly handle: (request: IncomingMessage, socket: Duplex, head: Buffer) => void;
  /** WebSocket connections open right now (subscribed or not yet). */
  readonly connections: number;
  /** Closes every connection with code 1001 (clients reconnect elsewhere) and stops the feed's share of the LISTEN. */
  close(): Promise<void>;
}

/**
 * Serves the outbox log over WebSocket, with acknowledgements and credit-based flow control (see
 * the README's protocol section): the client sends `{"type":"subscribe","after":cursor,"topics":[…]}`,
 * the server answers `subscribed` and then `{"type":"event","cursor",…,"event":envelope}` messages,
 * at most `maxInFlight` ahead of the client's `{"type":"ack","cursor":…}`. The same `authorize`
 * hook (run on the upgrade request, so cookies and headers count), scoping, cursors and limits as
 * the SSE feed; a refusal is an `error` message and a close with code `4000 + status`.
 *
 * @example
 * const feed = websocketFeed({ database, authorize: async (req) => ({ tenant: (await session(req)).tenantId }) });
 * server.on('upgrade', (req, socket, head) => {
 *   if (req.url?.startsWith('/ws')) feed.handle(req, socket, head);
 *   else socket.destroy();
 * });
 */
export function websocketFeed(options: WebSocketFeedOptions): WebSocketFeed {
  const { WebSocketServer } = requirePackage<typeof import('ws')>('ws', websocketFeature);
  const resolved = resolveFeedOptions(options, 'now');
  const maxInFlight = wholeOption('maxInFlight', options.maxInFlight, 100, 1, 100_000);
  const heartbeatMs = wholeOption('heartbeatMs', options.heartbeatMs, 15_000);
  const batchSize = wholeOption('batchSize', options.batchSize, 500, 1, 10_000);
  const { hub, release } = acquireHub(resolved.database, {
    schema: resolved.schema,
    pollIntervalMs: resolved.pollIntervalMs,
    batchSize,
    onError: resolved.onError,
  });
  const settings = { hub, batchSize, onError: resolved.onError, eventMessage: eventMessages(feedEncoding(resolved.cloudEvents)) };
  const server = new WebSocketServer({ noServer: true, clientTracking: false, maxPayload: maxClientMessageBytes, perMessageDeflate: false });
  const sockets = new Map<WebSocket, SocketState>();
  const slots = new ConnectionSlots(resolved.limits, 'WebSocket connections');
  let closed = false;
  const heartbeat = setInterval(() => {
    for (const [socket, state] of sockets) {
      if (!state.alive) {
        socket.terminate();
        continue;
      }
      state.alive = false;
      // Random, so only a peer that read the ping can answer it: an unsolicited pong (allowed by the
      // protocol) would otherwise keep alive a client that reads nothing.
      state.ping = randomBytes(8);
      socket.ping(state.ping);
    }
  }, heartbeatMs).unref();

  /** Completes the upgrade and says why the connection cannot be served. */
  function refuse(request: IncomingMessage, socket: Duplex, head: Buffer, error: unknown): void {
    const problem = problemOf(error);
    if (isServerSide(problem)) resolved.onError(error);
    if (socket.destroyed) return;
    server.handleUpgrade(request, socket, head, (ws) => {
      ws.send(errorMessage(problem));
      ws.close(problemCloseCode(problem), problem.error);
    });
  }

  async function open(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    let granted: ResolvedScope;
    let releaseSlot: () => void;
    if (closed) return void server.handleUpgrade(request, socket, head, (ws) => ws.close(closeCodes.goingAway, 'the feed is closing'));
    try {
      granted = await resolveScope(resolved.authorize, request, undefined);
      releaseSlot = slots.take(granted.tenant);
    } catch (error) {
      return refuse(request, socket, head, error);
    }
    if (socket.destroyed) return releaseSlot();
    socket.once('close', releaseSlot);
    server.handleUpgrade(request, socket, head, (ws) => {
      const state: SocketState = { alive: true };
      sockets.set(ws, state);
      ws.on('pong', (data: Buffer) => {
        if (state.ping === undefined || data.equals(state.ping)) state.alive = true;
      });
      // A connection that does not subscribe by the next heartbeat is closed: it would hold a slot for nothing.
      const deadline = setTimeout(() => {
        if (!subscribing) ending(ws, new ClientMessageError('subscribe', `did not come within ${heartbeatMs} ms of connecting (the feed's heartbeatMs)`));
      }, heartbeatMs);
      ws.once('close', () => {
        clearTimeout(deadline);
        sockets.delete(ws);
        state.connection?.gone();
        releaseSlot();
      });
      ws.on('error', () => ws.terminate());
      let subscribing = false;
      if (closed) return void ws.close(closeCodes.goingAway, 'the feed is closing');
      ws.on('message', (data: RawData, binary: boolean) => {
        try {
          if (binary) throw new ClientMessageError('message', 'must be a text frame holding JSON');
          const message = parseClientMessage(data.toString());
          if (message.type === 'ack') {
            if (!state.connection) throw new ClientMessageError('ack', 'came before the subscription was running; wait for subscribed');
            state.connection.ack(message.cursor);
          } else {
            if (subscribing) throw new ClientMessageError('subscribe', 'came twice; open another connection for another subscription');
            subscribing = true;
            subscribe(request, ws, granted, message, state).catch((error: unknown) => ending(ws, error));
          }
        } catch (error) {
          if (state.connection) state.connection.end(error);
          else ending(ws, error);
        }
      });
    });
  }

  /** Starts the subscription, or throws what the client is told (a bad cursor, topics it may not read …). */
  async function subscribe(request: IncomingMessage, ws: WebSocket, granted: ResolvedScope, message: SubscribeMessage, state: SocketState): Promise<void> {
    const start = message.after === undefined ? resolved.from : parseStart(message.after);
    const scope = await resolveScope(() => granted, request, message.topics);
    const credit = Math.min(maxInFlight, message.maxInFlight ?? maxInFlight);
    await hub.checkStart(start);
    // Read before answering, so that a bad or expired cursor is refused before `subscribed`.
    const first = await hub.read(scope, start, Math.min(batchSize, credit), false);
    if (ws.readyState !== ws.OPEN || closed) return;
    const connection = new WebSocketConnection(ws, scope, first.next, credit, settings);
    state.connection = connection;
    ws.send(JSON.stringify({ type: 'subscribed', maxInFlight: credit }));
    connection.start(first);
  }

  /** Says why, then closes a connection that has no running subscription. */
  function ending(ws: WebSocket, error: unknown): void {
    const problem = problemOf(error);
    if (isServerSide(problem)) resolved.onError(error);
    if (ws.readyState !== ws.OPEN) return;
    ws.send(errorMessage(problem));
    ws.close(problemCloseCode(problem), problem.error);
  }

  return {
    handle(request, socket, head) {
      open(request, socket, head).catch((error: unknown) => {
        resolved.onError(error);
        socket.destroy();
      });
    },
    get connections() {
      return sockets.size;
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(heartbeat);
      for (const [ws, state] of sockets) {
        if (state.connection) state.connection.end();
        else ws.close(closeCodes.goingAway, 'the feed is closing');
      }
      await release();
    },
  };
}
