import { inbox, migrateInbox } from '@tidings/inbox';
import { comparePositions, decodePosition, encodePosition, type Executor } from '@tidings/outbox';
import { pollingConsumer } from '@tidings/relays/polling';
import { sseConsumer, type FeedConsumer, type FeedConsumerEvent } from '@tidings/relays/sse';
import type { ConsumerHarness } from '@tidings/relays/testing';
import { randomBytes } from 'node:crypto';
import { waitUntil } from './check.ts';
import { startFeedServer } from './feed-server.ts';

const paths = { sse: '/events', polling: '/feed' } as const;

/**
 * sseConsumer or pollingConsumer against a real feed server over the outbox. A feed delivers an
 * event again when it is asked from an older cursor: `redeliver` makes the next request ask from
 * the start of the log. A crash is the consumer stopped right after a commit and a new one started
 * from the stored cursor, the feed replaying from the start.
 */
export async function feedConsumerHarness(kind: 'sse' | 'polling'): Promise<ConsumerHarness> {
  const feed = await startFeedServer(`${kind}_conformance`);
  const db = feed.outbox.db;
  await migrateInbox(db, { schema: feed.outbox.schema });
  const helper = kind === 'sse' ? sseConsumer : pollingConsumer;
  return {
    database: db,
    schema: feed.outbox.schema,
    configure: (overrides) => helper({ url: `http://nowhere.invalid${paths[kind]}`, consumer: 'c', database: db, handler: () => {}, ...overrides }),
    async start(run) {
      const topic = `conformance.${randomBytes(4).toString('hex')}`;
      const url = new URL(`${feed.origin}${paths[kind]}?topics=${topic}`).toString();
      let replay = false;
      // The next request asks from the start of the log: the feed serves everything again.
      const replayingFetch: typeof fetch = (input, init) => {
        if (!replay) return fetch(input, init);
        replay = false;
        const from = new URL(String(input));
        from.searchParams.set('after', 'start');
        const headers = { ...(init?.headers as Record<string, string> | undefined) };
        delete headers['last-event-id'];
        return fetch(from, { ...init, headers });
      };
      const replayed = async (): Promise<void> => {
        replay = true;
        // A stream in progress must end for the next request to be made.
        if (kind === 'sse') for (const request of feed.sseRequests) if (request.url?.includes(topic)) request.socket.destroy();
        await waitUntil('the consumer asked the feed again', () => !replay);
      };
      let crashes = 0;
      const make = (): FeedConsumer =>
        helper({
          url,
          consumer: run.consumer,
          schema: feed.outbox.schema,
          database: db,
          handler: (trx: Executor, event) => run.handler(trx, event),
          retry: run.retry,
          reconnect: { minDelayMs: 20, maxDelayMs: 200 },
          fetch: replayingFetch,
          ...(kind === 'polling' ? { waitSeconds: 1, limit: 7 } : {}),
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
        await replayed();
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
        redeliver: () => replayed(),
        async pending() {
          await restarting;
          const stored = await inbox({ consumer: run.consumer, schema: feed.outbox.schema }).loadCheckpoint(db, url);
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
    close: () => feed.close(),
  };
}
