import type { FeedScope } from '@tidings/relays/sse';
import { describeFeed, pollFeed, pollingFeedReader, sseFeedReader, websocketFeedReader, type FeedHarness, type FeedReaderOptions, type FeedRead } from '@tidings/relays/testing';
import { startFeedServer } from '../../../test/support/feed-server.ts';

// The test server's authorize hook (headerAuthorize) scopes a caller by these two headers.
const headers = (scope: FeedScope): Record<string, string> => ({
  ...(scope.tenant === undefined ? {} : { 'x-tenant': scope.tenant }),
  ...(scope.topics === undefined ? {} : { 'x-topics': scope.topics.join(',') }),
});

/** The SSE feed at /events, the polling feed at /feed and the WebSocket feed at /ws of a fresh outbox, read by `reader`. */
function feedHarness(label: string, reader: (options: FeedReaderOptions) => FeedRead, path: string, scheme: 'http' | 'ws' = 'http') {
  return async (): Promise<FeedHarness> => {
    const server = await startFeedServer(`conf_${label}`);
    return {
      publish: (events) => server.publish(events),
      head: async () => (await pollFeed(server.origin, { after: 'now' })).body.next,
      read: reader({ url: `${scheme === 'ws' ? server.wsOrigin : server.origin}${path}`, headers }),
      close: () => server.close(),
    };
  };
}

describeFeed('SSE', { tenants: true }, feedHarness('sse', sseFeedReader, '/events'));
describeFeed('polling', { tenants: true }, feedHarness('polling', pollingFeedReader, '/feed'));
describeFeed('WebSocket', { tenants: true }, feedHarness('websocket', websocketFeedReader, '/ws', 'ws'));
