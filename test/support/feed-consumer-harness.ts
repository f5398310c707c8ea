import { inbox, migrateInbox } from '@tidings/inbox';
import { comparePositions, decodePosition, encodePosition, type Executor } from '@tidings/outbox';
import { pollingConsumer } from '@tidings/relays/polling';
import { sseConsumer, type FeedConsumer, type FeedConsumerEvent } from '@tidings/relays/sse';
import type { ConsumerHarness } from '@tidings/relays/testing';
import { websocketConsumer } from '@tidings/relays/websocket';
import { randomBytes } from 'node:crypto';
import { waitUntil } from './check.ts';
import { startFeedServer, type FeedServer } from './feed-server.ts';
import { startReplayingRelay, type ReplayingRelay } from './websocket-relay.ts';

type Kind = 'sse' | 'polling' | 'websocket';

const helpers = { sse: sseConsumer, polling: pollingConsumer, websocket: websocketConsumer } as const;
const nowhere = { sse: 'http://nowhere.invalid/events', polling: 'http://nowhere.invalid/feed', websocket: 'ws://nowhere.invalid/ws' } as const;

/** How a consumer of one kind is pointed at the feed, and how the feed is made to serve everything again. */
interface Route {
  /** Options of the helper beyond the common ones. */
  readonly options: Record<string, unknown>;
  /** The checkpoint's name. */
  readonly source: string;
  /** Makes the consumer's next request or subscription ask from the start of the log; resolves once it did. */
  replayed(): Promise<void>;
}

/**
 * sseConsumer, pollingConsumer or websocketConsumer against a real feed server over the outbox. A
 * feed delivers an event again when it is asked from an older cursor: `redeliver` makes the next
 * request ask from the start of the log (for WebSocket, a relay rewrites the next subscription).
 * A crash is the consumer stopped right after a commit and a new one started from the stored
 * cursor, the feed replaying from the start.
 */
export async function feedConsumerHarness(kind: Kind): Promise<ConsumerHarness> {
  const feed = await startFeedServer(`${kind}_conformance`);
  const relay = kind === 'websocket' ? await startReplayingRelay(`${feed.wsOrigin}/ws`) : undefined;
  const db = feed.outbox.db;
  await migrateInbox(db, { schema: feed.outbox.schema });
  const helper = helpers[kind] as typeof sseConsumer;
  return {
    database: db,
    schema: feed.outbox.schema,
    configure: (overrides) => helper({ url: nowhere[kind], consumer: 'c', database: db, handler: () => {}, ...overrides }),
    async start(run) {
      const topic = `conformance.${randomBytes(4).toString('hex')}`;
      const route = relay ? relayRoute(relay, topic) : httpRoute(kind, feed, topic);
      let crashes = 0;
      const make = (): FeedConsumer =>
        helper({
          consumer: run.consumer,
          schema: feed.outbox.schema,
          database: db,
          handler: (trx: Executor, event) => run.handler(trx, event),
          retry: run.retry,
          reconnect: { minDelayMs: 20, maxDelayMs: 200 },
          ...(route.options as { url: string }),
          onEvent: (event: FeedConsumerEvent) => {
            if (run.crashAfterFirstCommit && crashes === 0 && event.type === 'committed') {
              crashes++;
              restarting = restart();
            }
            run.onEvent(event);
          },
        });
      let current = make();
      let restarting: Promise<void> = Promise.resolve();
      const restart = async (): Promise<void> => {
        await current.close();
        current = make();
        await route.replayed();
      };
      const cursors = new Map<string, string>();
      return {
        get consumer() {
          return current;
        },
        get crashes() {
          return crashes;
        },
        async deliver(inputs) {
          const events = await feed.publish(inputs.map((input) => ({ topic, key: input.key, payload: input.payload })));
          for (const event of events) cursors.set(event.eventId, encodePosition(event.position));
          return events.map((event) => event.eventId);
        },
        redeliver: () => route.replayed(),
        async pending() {
          await restarting;
          const stored = await inbox({ consumer: run.consumer, schema: feed.outbox.schema }).loadCheckpoint(db, route.source);
          if (stored === null) return cursors.size;
          const position = decodePosition(stored);
          return [...cursors.values()].filter((cursor) => comparePositions(decodePosition(cursor), position) > 0).length;
        },
        async close() {
          await restarting;
          await current.close();
        },
      };
    },
    async close() {
      await relay?.close();
      await feed.close();
    },
  };
}

/** SSE and polling: the topic in the URL; a fetch that turns the next request into one from the start. */
function httpRoute(kind: Kind, feed: FeedServer, topic: string): Route {
  const url = new URL(`${feed.origin}${kind === 'sse' ? '/events' : '/feed'}?topics=${topic}`).toString();
  let replay = false;
  const replayingFetch: typeof fetch = (input, init) => {
    if (!replay) return fetch(input, init);
    replay = false;
    const from = new URL(String(input));
    from.searchParams.set('after', 'start');
    const headers = { ...(init?.headers as Record<string, string> | undefined) };
    delete headers['last-event-id'];
    return fetch(from, { ...init, headers });
  };
  return {
    options: { url, fetch: replayingFetch, ...(kind === 'polling' ? { waitSeconds: 1, limit: 7 } : {}) },
    source: url,
    async replayed() {
      replay = true;
      // A stream in progress must end for the next request to be made.
      if (kind === 'sse') for (const request of feed.sseRequests) if (request.url?.includes(topic)) request.socket.destroy();
      await waitUntil('the consumer asked the feed again', () => !replay);
    },
  };
}

/** WebSocket: the topic in the subscription; the relay rewrites the next one to start over. */
function relayRoute(relay: ReplayingRelay, topic: string): Route {
  return {
    options: { url: relay.url, topics: [topic], source: topic },
    source: topic,
    async replayed() {
      relay.replayNext();
      relay.cutAll();
      await waitUntil('the consumer subscribed again', () => !relay.replayPending);
    },
  };
}
