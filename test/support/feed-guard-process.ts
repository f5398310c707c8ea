/**
 * The SSE and polling feeds in a process of their own, for tests that must watch the feed process
 * from outside (a frozen event loop cannot report that it froze). Serves `/events` and `/feed`
 * with the `x-tenant` header as the caller's tenant, and answers JSON lines on stdout:
 * `{ type: 'listening', port }` at start, and for every `stats` line read from stdin
 * `{ type: 'stats', queries, feedReads, loopDelayMaxMs, sseConnections, pollsWaiting }` since the
 * last `reset` line. Options for the feeds come as JSON in `FEED_OPTIONS` (`{ sse, polling }`).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { pgDatabase } from '@tidings/outbox';
import { pollingFeed } from '@tidings/relays/polling';
import { sseFeed, type FeedEvent } from '@tidings/relays/sse';
import { countingDatabase, headerAuthorize, type DatabaseCounts } from './feed-server.ts';

const options = JSON.parse(process.env.FEED_OPTIONS ?? '{}') as { sse?: object; polling?: object };
const pool = pgDatabase(process.env.DATABASE_URL!, { max: 8 });
const counts: DatabaseCounts = { queries: 0, feedReads: 0, listens: 0 };
const database = countingDatabase(pool, counts);
const schema = process.env.TIDINGS_SCHEMA!;
const errors: string[] = [];
const onEvent = (event: FeedEvent): void => void errors.push(String(event.error));
const sse = sseFeed({ database, schema, authorize: headerAuthorize, pollIntervalMs: 500, onEvent, ...options.sse });
const polling = pollingFeed({ database, schema, authorize: headerAuthorize, pollIntervalMs: 500, onEvent, ...options.polling });
const server = createServer((request, response) => {
  const path = (request.url ?? '/').split('?')[0];
  if (path === '/events') sse.handle(request, response);
  else if (path === '/feed') polling.handle(request, response);
  else response.writeHead(404).end();
});
const delay = monitorEventLoopDelay({ resolution: 10 });
delay.enable();

server.listen(0, '127.0.0.1', () => say({ type: 'listening', port: (server.address() as AddressInfo).port }));

function say(line: object): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'reset') {
    delay.reset();
    counts.queries = 0;
    counts.feedReads = 0;
    errors.length = 0;
    say({ type: 'reset' });
  } else if (line === 'stats') {
    say({
      type: 'stats',
      queries: counts.queries,
      feedReads: counts.feedReads,
      loopDelayMaxMs: delay.max / 1e6,
      sseConnections: sse.connections,
      pollsWaiting: polling.waiting,
      errors: [...errors],
    });
  }
});
process.stdin.on('end', () => {
  void Promise.all([sse.close(), polling.close()])
    .then(() => {
      server.closeAllConnections();
      server.close();
      return pool.close();
    })
    .then(() => process.exit(0));
});
