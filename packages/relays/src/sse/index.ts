/**
 * `@tidings/relays/sse`: the outbox log as Server-Sent Events, and a consumer that follows such a
 * feed with exactly-once effects.
 *
 * @example
 * import { sseFeed } from '@tidings/relays/sse';
 * const feed = sseFeed({ database, authorize: (req) => ({ tenant: tenantOf(req) }) });
 * app.get('/events', feed.handle);
 */
export { sseFeed, type SseFeed, type SseFeedOptions } from './sse-feed.ts';
export { sseConsumer, type SseConsumerOptions } from './sse-consumer.ts';
export { defaultMaxSseLength, SseLimitError, SseParser, type SseMessage, type SseParserOptions } from './sse-parser.ts';
export { feedErrorEvent } from './sse-frames.ts';
export { AccessDeniedError, FeedResponseError } from '../feed/errors.ts';
export type { Authorize, FeedScope } from '../feed/scope.ts';
export type { FeedRequest, FeedResponse } from '../feed/http-types.ts';
export type { FeedEnvelope } from '../feed/envelope.ts';
export type { FeedEvent, FeedOptions } from '../feed/feed-options.ts';
export type { FeedConsumerEvent, FeedConsumerOptions } from '../feed/consumer-options.ts';
export { HandlerFailedError } from '../shared/consumer.ts';
export type * from '../shared/consumer-exports.ts';
export type { FeedConsumer } from '../feed/feed-consumer.ts';
export { wireVersion, type CloudEventsOptions } from '../shared/cloud-events.ts';
