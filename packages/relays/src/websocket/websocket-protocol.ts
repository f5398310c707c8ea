import type { OutboxEvent } from '@tidings/outbox';
import { cursorText } from '../feed/cursor.ts';
import type { FeedEnvelope } from '../feed/envelope.ts';
import { FeedRequestError } from '../feed/errors.ts';
import type { Problem } from '../feed/problem.ts';
import { isTopicPattern } from '../feed/scope.ts';

/**
 * The WebSocket feed's protocol: JSON text frames, one message each, told apart by `type`.
 *
 * Client to server: one `subscribe` first, then any number of `ack`s.
 * Server to client: `subscribed`, then `event`s; an `error` just before it closes a connection it
 * cannot go on with.
 */

/** Sent once, as the first message: what to read and from where. */
export interface SubscribeMessage {
  readonly type: 'subscribe';
  /** A cursor (an event's `cursor`), `start` or `now`. Default: the feed's `from`. */
  readonly after?: string;
  /** Topic names or prefixes ending in `*`, narrowed to what `authorize` allows. Default: all it allows. */
  readonly topics?: readonly string[];
  /** Asks for fewer unacknowledged events in flight than the feed's `maxInFlight`. */
  readonly maxInFlight?: number;
}

/** Acknowledges every event up to and including the one with this cursor: frees that many credits. */
export interface AckMessage {
  readonly type: 'ack';
  readonly cursor: string;
}

export type ClientMessage = SubscribeMessage | AckMessage;

/** The subscription is running; at most `maxInFlight` events are sent ahead of the last `ack`. */
export interface SubscribedMessage {
  readonly type: 'subscribed';
  readonly maxInFlight: number;
}

/** One event of the log; `cursor` (= `event.cursor`) is what to `ack` and to resume after. */
export interface EventMessage {
  readonly type: 'event';
  readonly cursor: string;
  readonly event: FeedEnvelope;
}

/** Why the server is about to close: the problem the SSE and polling feeds answer as a body. */
export interface ErrorMessage {
  readonly type: 'error';
  readonly status: number;
  /** `invalid-cursor`, `cursor-expired`, `unauthorized`, `forbidden`, `invalid-request`, `too-many-connections` or `unavailable`. */
  readonly error: string;
  readonly message: string;
  readonly cursor?: string;
}

export type ServerMessage = SubscribedMessage | EventMessage | ErrorMessage;

/**
 * Close codes: `1000` the client closed, `1001` the feed is shutting down (reconnect), `1009` a
 * client message over 64 KiB, and `4000 + status` after an `error` message (`4400` bad cursor or
 * message, `4401`, `4403`, `4410` expired cursor, `4429` too many connections, `4503` unavailable).
 */
export const closeCodes = { normal: 1000, goingAway: 1001, problemBase: 4000 } as const;

/** The close code that goes with a problem. */
export function problemCloseCode(problem: Problem): number {
  return closeCodes.problemBase + problem.status;
}

/** An ill-formed client message; answered like a malformed query parameter (`invalid-request`, 4400). */
export class ClientMessageError extends FeedRequestError {
  constructor(field: string, detail: string) {
    super(field, detail);
    this.message = `${field} ${detail}`;
  }
}

/** The longest client message the feed reads; its messages are small. */
export const maxClientMessageBytes = 64 * 1024;

/** Parses and checks one client frame. */
export function parseClientMessage(data: string): ClientMessage {
  let message: unknown;
  try {
    message = JSON.parse(data);
  } catch {
    throw new ClientMessageError('message', 'is not JSON; send {"type":"subscribe",...} or {"type":"ack","cursor":...}');
  }
  if (typeof message !== 'object' || message === null) throw new ClientMessageError('message', 'must be a JSON object with a type');
  const { type } = message as { type?: unknown };
  if (type === 'ack') {
    const { cursor } = message as { cursor?: unknown };
    if (typeof cursor !== 'string') throw new ClientMessageError('ack.cursor', "must be the cursor of an event received (a string)");
    return { type, cursor };
  }
  if (type === 'subscribe') {
    const { after, topics, maxInFlight } = message as Record<string, unknown>;
    if (after !== undefined && typeof after !== 'string') throw new ClientMessageError('subscribe.after', 'must be a cursor, start or now');
    if (topics !== undefined) {
      if (!Array.isArray(topics) || topics.length === 0) throw new ClientMessageError('subscribe.topics', 'must be a non-empty list of topic names or prefixes ending in *');
      const bad = topics.find((t) => !isTopicPattern(t));
      if (bad !== undefined) throw new ClientMessageError('subscribe.topics', `has ${JSON.stringify(bad)}, which is not a topic name or a prefix ending in *`);
    }
    if (maxInFlight !== undefined && (typeof maxInFlight !== 'number' || !Number.isInteger(maxInFlight) || maxInFlight < 1)) {
      throw new ClientMessageError('subscribe.maxInFlight', `must be a whole number of at least 1; got ${JSON.stringify(maxInFlight)}`);
    }
    return {
      type,
      ...(after === undefined ? {} : { after }),
      ...(topics === undefined ? {} : { topics: topics as string[] }),
      ...(maxInFlight === undefined ? {} : { maxInFlight }),
    };
  }
  throw new ClientMessageError('message', `has type ${JSON.stringify(type)}; expected subscribe or ack`);
}

/** What needs the `ws` package, for the MissingPackageError when it is not installed. */
export const websocketFeature = 'the WebSocket feed (websocketFeed, websocketConsumer)';

/**
 * The `event` messages of one feed: each event's envelope as `encode` writes it (the tidings
 * envelope, or a structured CloudEvent), made once however many connections send it.
 */
export function eventMessages(encode: (event: OutboxEvent) => string): (event: OutboxEvent) => string {
  const texts = new WeakMap<OutboxEvent, string>();
  return (event) => {
    let text = texts.get(event);
    if (text === undefined) {
      text = `{"type":"event","cursor":${JSON.stringify(cursorText(event.position))},"event":${encode(event)}}`;
      texts.set(event, text);
    }
    return text;
  };
}

/** The `error` message of a problem: the fields of the other feeds' problem bodies that say what to do. */
export function errorMessage(problem: Problem): string {
  const { status, error, message, cursor } = problem;
  return JSON.stringify({ type: 'error', status, error, message, ...(cursor ? { cursor } : {}) });
}
