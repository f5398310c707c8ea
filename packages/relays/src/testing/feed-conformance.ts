import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { comparePositions, encodePosition, type EventInput, type OutboxEvent } from '@tidings/outbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeedEnvelope } from '../feed/envelope.ts';
import type { FeedScope } from '../feed/scope.ts';
import { openSse, pollFeed } from './feed-clients.ts';

/** What differs between pull feeds, as data: the checks that do not fit are not generated. */
export interface FeedCapabilities {
  /** A caller can be limited to one tenant's events: the check that tenants stay apart runs. */
  readonly tenants: boolean;
}

/** One read of the feed by the suite: as a caller limited to `scope`, from `after`, until `count` events arrived. */
export interface FeedReadRequest {
  readonly after: string;
  readonly count: number;
  /** Always names the check's own topics (other checks and runs publish to the same log). */
  readonly scope: FeedScope & { readonly topics: readonly string[] };
}

/** Reads the feed once; resolves with every event received, in order, strays after the `count` included. */
export type FeedRead = (request: FeedReadRequest) => Promise<readonly FeedEnvelope[]>;

/** What a feed's test file gives the suite: your server, the outbox it serves, and how to read it as a caller. */
export interface FeedHarness {
  /** Publishes the events in one committed transaction; resolves with them as stored (with their positions), in log order. */
  publish(events: readonly EventInput[]): Promise<readonly OutboxEvent[]>;
  /** A cursor at the head of the log: a read from it sees only events published later. */
  head(): Promise<string>;
  /** Reads as one caller; `sseFeedReader`, `pollingFeedReader` and `websocketFeedReader` read the feeds tidings serves. */
  readonly read: FeedRead;
  close(): Promise<void>;
}

export interface FeedConformanceOptions {
  /** Timeout of each test. Default 60 000 ms. */
  readonly testTimeoutMs?: number;
}

/** How a reader says who the caller is: the request headers your `authorize` hook maps to `scope`. */
export type ScopeHeaders = (scope: FeedScope) => Record<string, string>;

export interface FeedReaderOptions {
  /** The feed's URL: e.g. `http://127.0.0.1:3000/events` (SSE), `http://127.0.0.1:3000/feed` (polling) or `ws://127.0.0.1:3000/ws` (WebSocket). */
  readonly url: string;
  readonly headers: ScopeHeaders;
}

/**
 * Reads an SSE feed (`?after=` the request's cursor) until `count` events arrived, then 150 ms
 * longer for strays.
 *
 * @example
 * const read = sseFeedReader({ url: `${origin}/events`, headers: (scope) => ({ authorization: tokenFor(scope) }) });
 */
export function sseFeedReader(options: FeedReaderOptions): FeedRead {
  return async ({ after, count, scope }) => {
    const url = new URL(options.url);
    url.searchParams.set('after', after);
    const reader = await openSse(url.href, options.headers(scope));
    try {
      await reader.waitFor(count);
      await sleep(150);
      return [...reader.events];
    } finally {
      reader.close();
    }
  };
}

/**
 * Long-polls pages of 7 from the polling feed until `count` events arrived, then once more
 * (without waiting) for strays.
 *
 * @example
 * const read = pollingFeedReader({ url: `${origin}/feed`, headers: (scope) => ({ authorization: tokenFor(scope) }) });
 */
export function pollingFeedReader(options: FeedReaderOptions): FeedRead {
  return async ({ after, count, scope }) => {
    const events: FeedEnvelope[] = [];
    let cursor = after;
    for (let strays = false; ; ) {
      const { status, body } = await pollFeed(options.url, { after: cursor, limit: 7, wait: strays ? 0 : 1 }, options.headers(scope));
      if (status !== 200) throw new Error(`the polling feed answered ${status}: ${JSON.stringify(body)}`);
      events.push(...body.events);
      cursor = body.next;
      if (strays && !body.hasMore) return events;
      if (events.length >= count) strays = true;
    }
  };
}

/**
 * The pull feed conformance suite (after the transport suite, for what fits a feed): declares one
 * vitest test per behaviour: everything arrives intact, in the log's order, tenants apart, topics
 * apart, and a reader that resumes from its last cursor misses nothing and sees nothing twice. The
 * harness is created once for the suite and closed after it.
 *
 * @example
 * describeFeed('our SSE', { tenants: true }, async () => {
 *   const app = await startApp();
 *   return { publish: app.publishEvents, head: app.headCursor, read: sseFeedReader({ url: `${app.origin}/events`, headers: app.headersFor }), close: app.stop };
 * });
 */
export function describeFeed(name: string, capabilities: FeedCapabilities, factory: () => Promise<FeedHarness>, options: FeedConformanceOptions = {}): void {
  const timeout = options.testTimeoutMs ?? 60_000;
  describe(`${name} feed conformance`, () => {
    let harness: FeedHarness | undefined;
    const topic = (label: string): string => `conformance.${label}.${randomBytes(3).toString('hex')}`;
    const ids = (events: readonly { eventId: string }[]): string[] => events.map((e) => e.eventId);
    const feed = (): FeedHarness => {
      if (!harness) throw new Error(`the ${name} feed harness factory failed; see the error of beforeAll`);
      return harness;
    };

    beforeAll(async () => {
      harness = await factory();
    }, timeout);
    afterAll(async () => {
      await harness?.close();
    }, timeout);

    it('delivers every event with its id, topic, key, tenant, headers, payload and time intact', { timeout }, async () => {
      const t = topic('intact');
      const from = await feed().head();
      const inputs: EventInput[] = [
        { topic: t, key: 'k', payload: { nested: { list: [1, 2.5, null, true] }, text: 'ünïcødé ✓ \n "quoted"' }, headers: { traceparent: '00-1-2-01', x: 'y' } },
        { topic: t, key: null, payload: null },
        { topic: t, payload: 'a string', ...(capabilities.tenants ? { tenant: 'acme' } : {}) },
        { topic: t, payload: [{ deep: [[[]]] }], key: 'k' },
      ];
      const published = inLogOrder(await feed().publish(inputs));
      const received = await feed().read({ after: from, count: published.length, scope: { topics: [t] } });
      expect(received).toEqual(published.map(envelopeOf));
    });

    it("delivers concurrent transactions' events in the log's order", { timeout }, async () => {
      const t = topic('order');
      const from = await feed().head();
      const published = (
        await Promise.all(Array.from({ length: 20 }, (_, i) => feed().publish(Array.from({ length: 5 }, (_, j) => ({ topic: t, key: `k${j}`, payload: { i, j } })))))
      ).flat();
      const received = await feed().read({ after: from, count: published.length, scope: { topics: [t] } });
      expect(ids(received)).toEqual(ids(inLogOrder(published)));
    });

    if (capabilities.tenants) {
      it("never delivers one tenant's events to another", { timeout }, async () => {
        const t = topic('tenants');
        const from = await feed().head();
        const published = await feed().publish(['acme', 'globex', 'acme', null, 'globex'].map((tenant, n) => ({ topic: t, tenant, payload: n })));
        for (const tenant of ['acme', 'globex']) {
          const received = await feed().read({ after: from, count: 2, scope: { tenant, topics: [t] } });
          expect(ids(received)).toEqual(ids(published.filter((e) => e.tenant === tenant)));
        }
      });
    }

    it('keeps topics apart', { timeout }, async () => {
      const [a, b] = [topic('a'), topic('b')];
      const from = await feed().head();
      const published = await feed().publish([a, b, a, b, a].map((t, n) => ({ topic: t, payload: n })));
      expect(ids(await feed().read({ after: from, count: 3, scope: { topics: [a] } }))).toEqual(ids(published.filter((e) => e.topic === a)));
    });

    it('resumes after a disconnect from the last cursor it received, missing nothing and repeating nothing', { timeout }, async () => {
      const t = topic('resume');
      const from = await feed().head();
      const first = await feed().publish(Array.from({ length: 10 }, (_, n) => ({ topic: t, payload: n })));
      const before = await feed().read({ after: from, count: 10, scope: { topics: [t] } });
      const second = await feed().publish(Array.from({ length: 10 }, (_, n) => ({ topic: t, payload: 10 + n })));
      const after = await feed().read({ after: before.at(-1)!.cursor, count: 10, scope: { topics: [t] } });
      expect([...ids(before), ...ids(after)]).toEqual(ids([...first, ...second]));
    });
  });
}

const inLogOrder = (events: readonly OutboxEvent[]): OutboxEvent[] => [...events].sort((a, b) => comparePositions(a.position, b.position));

/** What the feed must send for `event`, written out here rather than taken from the feed's own code. */
function envelopeOf(event: OutboxEvent): FeedEnvelope {
  return {
    cursor: encodePosition(event.position),
    eventId: event.eventId,
    topic: event.topic,
    key: event.key,
    tenant: event.tenant,
    payload: event.payload,
    headers: event.headers,
    createdAt: event.createdAt.toISOString(),
  };
}
