import { ConfigError } from '@tidings/outbox';
import type { RawData } from 'ws';
import { resolveConsumerOptions, type FeedConsumerOptions } from '../feed/consumer-options.ts';
import { feedEnvelopeOf, type FeedEnvelope } from '../feed/envelope.ts';
import { FeedResponseError } from '../feed/errors.ts';
import { runConsumer, type FeedConsumer, type Session } from '../feed/feed-consumer.ts';
import { problemError, type ProblemBody } from '../feed/response-error.ts';
import { isTopicPattern } from '../feed/scope.ts';
import { requirePackage } from '../shared/optional-package.ts';
import { wholeOption } from '../shared/options.ts';
import type { TransactionSource } from '../shared/transaction-source.ts';
import { closeCodes, websocketFeature, type ServerMessage } from './websocket-protocol.ts';

export interface WebSocketConsumerOptions<Source extends TransactionSource> extends FeedConsumerOptions<Source> {
  /** The topics to subscribe to (names or prefixes ending in `*`), narrowed by the feed's `authorize`. Default: all it allows. */
  readonly topics?: readonly string[];
  /**
   * The most events the feed may send ahead of this consumer's acknowledgements (the feed's own
   * `maxInFlight` caps it). Default 100.
   */
  readonly maxInFlight?: number;
  /**
   * A connection that receives nothing, not even a ping, for this long is taken for dead and
   * opened again. Default 45 000 ms (three of the feed's default heartbeats).
   */
  readonly idleTimeoutMs?: number;
  /** The longest message accepted; a longer one closes the connection (code 1009) and it is opened again. Default 8 Mi. */
  readonly maxEventLength?: number;
}

/** One thing the connection brought, in order. */
type Arrival = { readonly message: RawData } | { readonly closed: number; readonly reason: string } | { readonly error: Error };

/**
 * Follows a WebSocket feed and applies each event exactly once: the handler's effects and the
 * event's cursor commit in one transaction of the consumer's database (the inbox checkpoint), and
 * the event is acknowledged to the feed only after that commit. Every (re)connection subscribes
 * after the committed cursor, so a crash at any point leaves both applied or neither. Reconnects
 * with exponential backoff and jitter; stops for good on an expired or malformed cursor or a
 * refusal. `url` is the feed's `ws://` or `wss://` address; `headers` go with the upgrade request.
 *
 * @example
 * const consumer = websocketConsumer({
 *   url: 'wss://orders.internal/ws',
 *   topics: ['orders.*'],
 *   consumer: 'billing',
 *   database: pgDatabase(process.env.DATABASE_URL!), // the handler gets an Executor
 *   headers: async () => ({ authorization: `Bearer ${await token()}` }),
 *   handler: (trx, event) => trx.query('INSERT INTO invoices (order_id) VALUES ($1)', [(event.payload as { id: string }).id]),
 * });
 * process.on('SIGTERM', () => void consumer.close());
 * await consumer.done;
 */
export function websocketConsumer<Source extends TransactionSource>(options: WebSocketConsumerOptions<Source>): FeedConsumer {
  const { WebSocket } = requirePackage<typeof import('ws')>('ws', websocketFeature);
  const resolved = resolveConsumerOptions(options);
  const protocol = new URL(resolved.url).protocol;
  if (protocol !== 'ws:' && protocol !== 'wss:') throw new ConfigError('url', `expected a ws:// or wss:// URL, got ${JSON.stringify(resolved.url)}`);
  const topics = options.topics;
  if (topics !== undefined && (!Array.isArray(topics) || topics.length === 0 || !topics.every(isTopicPattern))) {
    throw new ConfigError('topics', `expected a non-empty list of topic names or prefixes ending in *, got ${JSON.stringify(topics)}`);
  }
  const maxInFlight = wholeOption('maxInFlight', options.maxInFlight, 100, 1, 100_000);
  const idleTimeoutMs = wholeOption('idleTimeoutMs', options.idleTimeoutMs, 45_000);
  const maxPayload = wholeOption('maxEventLength', options.maxEventLength, 8 * 1024 * 1024);
  return runConsumer(resolved, 'websocket', async (session) => {
    const headers = await resolved.headers();
    const socket = new WebSocket(resolved.url, { headers, maxPayload, handshakeTimeout: idleTimeoutMs, perMessageDeflate: false });
    const arrivals: Arrival[] = [];
    let wake: (() => void) | undefined;
    const arrive = (arrival: Arrival): void => {
      arrivals.push(arrival);
      wake?.();
    };
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        arrive({ error: new Error(`the connection received nothing for ${idleTimeoutMs} ms`) });
        socket.terminate();
      }, idleTimeoutMs);
    };
    const stop = (): void => socket.terminate();
    session.signal.addEventListener('abort', stop, { once: true });
    socket.on('open', () => {
      arm();
      socket.send(JSON.stringify({ type: 'subscribe', after: session.cursor ?? resolved.from, maxInFlight, ...(topics ? { topics } : {}) }));
    });
    socket.on('ping', arm);
    socket.on('message', (message: RawData) => {
      arm();
      arrive({ message });
    });
    socket.on('unexpected-response', (_request, response) => {
      response.resume();
      arrive({ error: new FeedResponseError(resolved.url, response.statusCode ?? 0, undefined, 'the server did not accept a WebSocket connection') });
      socket.terminate();
    });
    socket.on('error', (error) => arrive({ error }));
    socket.on('close', (code, reason) => arrive({ closed: code, reason: reason.toString() }));
    try {
      for (;;) {
        if (session.signal.aborted) return {};
        const arrival = arrivals.shift();
        if (arrival === undefined) {
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
          continue;
        }
        if ('error' in arrival) throw arrival.error;
        if ('closed' in arrival) return closing(resolved.url, arrival.closed, arrival.reason, resolved.reconnect.minDelayMs);
        const message = parse(resolved.url, arrival.message);
        if (message.type === 'subscribed') session.progressed();
        else if (message.type === 'error') throw problemError(resolved.url, message.status, message as ProblemBody);
        else if (message.type === 'event') {
          await session.apply(envelopeOf(resolved.url, message.event));
          // Acknowledged only once committed: an ack lost with the connection only means the feed sends it again.
          if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: 'ack', cursor: message.cursor }));
          session.progressed();
        }
      }
    } finally {
      clearTimeout(timer);
      session.signal.removeEventListener('abort', stop);
      if (socket.readyState === WebSocket.OPEN) socket.close(closeCodes.normal);
      else socket.terminate();
    }
  });
}

function parse(url: string, data: RawData): ServerMessage {
  let message: unknown;
  try {
    message = JSON.parse(data.toString());
  } catch {
    throw new FeedResponseError(url, 200, undefined, 'a message of the feed is not JSON');
  }
  if (typeof message !== 'object' || message === null || typeof (message as { type?: unknown }).type !== 'string') {
    throw new FeedResponseError(url, 200, undefined, 'a message of the feed has no type');
  }
  return message as ServerMessage;
}

/** The event of an `event` message: a tidings envelope, or a structured CloudEvent (a feed with `cloudEvents`). */
function envelopeOf(url: string, event: unknown): FeedEnvelope {
  const envelope = feedEnvelopeOf(event);
  if (typeof envelope?.cursor !== 'string' || typeof envelope.eventId !== 'string') {
    throw new FeedResponseError(url, 200, undefined, 'an event message holds neither a tidings envelope nor a CloudEvent');
  }
  return envelope;
}

/** A close without an `error` message: reconnect after a clean or going-away close, back off after anything else. */
function closing(url: string, code: number, reason: string, reconnectAfterMs: number): { reconnectAfterMs: number } {
  if (code === closeCodes.normal || code === closeCodes.goingAway) return { reconnectAfterMs };
  if (code >= 4000 && code < 5000) throw problemError(url, code - closeCodes.problemBase, { error: reason || undefined });
  throw new FeedResponseError(url, 0, undefined, `the connection closed with code ${code}${reason ? ` (${reason})` : ''}`);
}
