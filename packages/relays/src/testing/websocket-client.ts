import { setTimeout as sleep } from 'node:timers/promises';
import type { WebSocket } from 'ws';
import type { FeedEnvelope } from '../feed/envelope.ts';
import { requirePackage } from '../shared/optional-package.ts';
import { websocketFeature, type ErrorMessage, type ServerMessage, type SubscribeMessage } from '../websocket/websocket-protocol.ts';
import { CountWaiters } from './event-waiters.ts';
import type { FeedRead, FeedReaderOptions } from './feed-conformance.ts';

/** A raw connection to a WebSocket feed: every message it received, and how it closed. */
export interface WebSocketReader {
  readonly socket: WebSocket;
  /** Every message received, parsed, in order. */
  readonly messages: ServerMessage[];
  /** The envelopes of the `event` messages. */
  readonly events: FeedEnvelope[];
  /** The `error` message, if the feed sent one. */
  readonly error: () => ErrorMessage | undefined;
  /** Resolves with the close code and reason once the connection is closed, by either side. */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Sends a client message as is (any JSON, or a raw string). */
  send(message: object | string): void;
  /** Acknowledges everything up to the event with `cursor`. */
  ack(cursor: string): void;
  /** Resolves once `count` events arrived; rejects after `timeoutMs` saying how many did. */
  waitFor(count: number, timeoutMs?: number): Promise<FeedEnvelope[]>;
  close(): void;
}

/**
 * Opens a connection to a WebSocket feed with the `ws` library, sends `subscribe` (unless it is
 * null) and keeps every message, for tests of a feed; resolves once the connection is open.
 * `onMessage` sees each message as it arrives (e.g. to acknowledge it).
 *
 * @example
 * const reader = await openWebSocketFeed('ws://127.0.0.1:3000/ws', { type: 'subscribe', after: 'start' });
 * const [first] = await reader.waitFor(1);
 * reader.ack(first!.cursor);
 */
export function openWebSocketFeed(
  url: string,
  subscribe: SubscribeMessage | null,
  headers: Record<string, string> = {},
  onMessage?: (message: ServerMessage, reader: WebSocketReader) => void,
): Promise<WebSocketReader> {
  const { WebSocket } = requirePackage<typeof import('ws')>('ws', websocketFeature);
  const socket = new WebSocket(url, { headers, perMessageDeflate: false });
  const messages: ServerMessage[] = [];
  const events: FeedEnvelope[] = [];
  let ended = false;
  const waiters = new CountWaiters(events, () => ended);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    socket.once('close', (code, reason) => {
      ended = true;
      resolve({ code, reason: reason.toString() });
      waiters.wake();
    });
  });
  const reader: WebSocketReader = {
    socket,
    messages,
    events,
    error: () => messages.find((m): m is ErrorMessage => m.type === 'error'),
    closed,
    send: (message) => socket.send(typeof message === 'string' ? message : JSON.stringify(message)),
    ack: (cursor) => socket.send(JSON.stringify({ type: 'ack', cursor })),
    waitFor: (count, timeoutMs = 15_000) => waiters.waitFor(count, timeoutMs),
    close: () => socket.terminate(),
  };
  socket.on('message', (data) => {
    const message = JSON.parse(data.toString()) as ServerMessage;
    messages.push(message);
    if (message.type === 'event') events.push(message.event);
    onMessage?.(message, reader);
    waiters.wake();
  });
  return new Promise((resolve, reject) => {
    socket.once('open', () => {
      if (subscribe) socket.send(JSON.stringify(subscribe));
      resolve(reader);
    });
    socket.once('unexpected-response', (_request, response) => reject(new Error(`the server answered the upgrade with ${response.statusCode}`)));
    socket.once('error', reject);
  });
}

/**
 * Reads a WebSocket feed: subscribes after the request's cursor to its topics, acknowledges each
 * event as it arrives, until `count` events arrived, then 150 ms longer for strays. The scope's
 * tenant and topics go to your `authorize` hook in `headers(scope)`, as with the other readers.
 *
 * @example
 * const read = websocketFeedReader({ url: `ws://127.0.0.1:${port}/ws`, headers: (scope) => ({ authorization: tokenFor(scope) }) });
 */
export function websocketFeedReader(options: FeedReaderOptions): FeedRead {
  return async ({ after, count, scope }) => {
    const reader = await openWebSocketFeed(options.url, { type: 'subscribe', after, topics: scope.topics }, options.headers(scope), (message, self) => {
      if (message.type === 'event') self.ack(message.cursor);
    });
    try {
      await reader.waitFor(count);
      await sleep(150);
      return [...reader.events];
    } finally {
      reader.close();
    }
  };
}
