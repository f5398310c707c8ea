/**
 * `@tidings/relays/websocket`: the outbox log over WebSocket, with acknowledgements and
 * credit-based flow control, and a consumer that follows such a feed with exactly-once effects.
 *
 * @example
 * import { websocketFeed } from '@tidings/relays/websocket';
 * const feed = websocketFeed({ database, authorize: (req) => ({ tenant: tenantOf(req) }) });
 * server.on('upgrade', (req, socket, head) => feed.handle(req, socket, head));
 */
export { websocketFeed, type WebSocketFeed, type WebSocketFeedOptions } from './websocket-feed.ts';
export { websocketConsumer, type WebSocketConsumerOptions } from './websocket-consumer.ts';
export {
  closeCodes,
  type AckMessage,
  type ClientMessage,
  type ErrorMessage,
  type EventMessage,
  type ServerMessage,
  type SubscribedMessage,
  type SubscribeMessage,
} from './websocket-protocol.ts';
export { AccessDeniedError, FeedResponseError } from '../feed/errors.ts';
export type { Authorize, FeedScope } from '../feed/scope.ts';
export type { FeedEnvelope } from '../feed/envelope.ts';
export type { FeedEvent, FeedOptions } from '../feed/feed-options.ts';
export type { FeedConsumerEvent, FeedConsumerOptions } from '../feed/consumer-options.ts';
export { HandlerFailedError } from '../shared/consumer.ts';
export type * from '../shared/consumer-exports.ts';
export type { FeedConsumer } from '../feed/feed-consumer.ts';
