/**
 * `@tidings/relays/polling`: the outbox log as pages over plain HTTP (with long polling and
 * ETags), and a consumer that follows such a feed with exactly-once effects.
 *
 * @example
 * import { pollingFeed } from '@tidings/relays/polling';
 * const feed = pollingFeed({ database, authorize: (req) => ({ tenant: tenantOf(req) }) });
 * app.get('/feed', feed.handle);
 */
export { pollingFeed, type PollingFeed, type PollingFeedOptions, type PollingPage } from './polling-feed.ts';
export { pollingConsumer, type PollingConsumerOptions } from './polling-consumer.ts';
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
