import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { comparePositions, encodePosition, type EventInput, type OutboxEvent } from '@tidings/outbox';
import type { FeedEnvelope } from '@tidings/relays/sse';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSse, poll } from './feed-clients.ts';
import { startFeedServer, type FeedServer } from './feed-server.ts';

/** How a pull feed is read: every event of a scope after a cursor, until `count` arrived. */
export interface FeedReader {
  read(server: FeedServer, after: string, count: number, headers?: Record<string, string>): Promise<FeedEnvelope[]>;
}

/** Reads an SSE stream until `count` events arrived, then a little longer for strays. */
export const sseReader: FeedReader = {
  async read(server, after, count, headers = {}) {
    const reader = await openSse(`${server.origin}/events?after=${after}`, headers);
    try {
      await reader.waitFor(count);
      await sleep(150);
      return [...reader.events];
    } finally {
      reader.close();
    }
  },
};

/** Long-polls pages of 7 until `count` events arrived, then once more for strays. */
export const pollingReader: FeedReader = {
  async read(server, after, count, headers = {}) {
    const events: FeedEnvelope[] = [];
    let cursor = after;
    for (let strays = false; ; ) {
      const { status, body } = await poll(server.origin, { after: cursor, limit: 7, wait: strays ? 0 : 1 }, headers);
      if (status !== 200) throw new Error(`the polling feed answered ${status}: ${JSON.stringify(body)}`);
      events.push(...body.events);
      cursor = body.next;
      if (strays && !body.hasMore) return events;
      if (events.length >= count) strays = true;
    }
  },
};

/**
 * The checks every pull feed passes (after the transport conformance suite, for what fits a feed):
 * everything arrives intact, in the log's order, tenants apart, topics apart, and a reader that
 * resumes from its last cursor misses nothing and sees nothing twice.
 */
export function describeFeed(name: string, reader: FeedReader): void {
  describe(`${name} feed conformance`, () => {
    let server: FeedServer;
    const topic = (label: string): string => `conformance.${label}.${randomBytes(3).toString('hex')}`;
    const cursorBefore = async (): Promise<string> => (await poll(server.origin, { after: 'now' })).body.next;
    const ids = (events: readonly { eventId: string }[]): string[] => events.map((e) => e.eventId);

    beforeAll(async () => {
      server = await startFeedServer(`conf_${name.toLowerCase().replace(/\W/g, '')}`);
    });
    afterAll(async () => {
      await server?.close();
    });

    it('delivers every event with its id, topic, key, tenant, headers, payload and time intact', async () => {
      const t = topic('intact');
      const from = await cursorBefore();
      const inputs: EventInput[] = [
        { topic: t, key: 'k', payload: { nested: { list: [1, 2.5, null, true] }, text: 'ünïcødé ✓ \n "quoted"' }, headers: { traceparent: '00-1-2-01', x: 'y' } },
        { topic: t, key: null, payload: null },
        { topic: t, payload: 'a string', tenant: 'acme' },
        { topic: t, payload: [{ deep: [[[]]] }], key: 'k' },
      ];
      const published = await server.publish(inputs);
      const received = await reader.read(server, from, published.length, { 'x-topics': t });
      expect(received).toEqual(published.map(envelopeOf));
    });

    it("delivers concurrent transactions' events in the log's order", async () => {
      const t = topic('order');
      const from = await cursorBefore();
      const published = (
        await Promise.all(Array.from({ length: 20 }, (_, i) => server.publish(Array.from({ length: 5 }, (_, j) => ({ topic: t, key: `k${j}`, payload: { i, j } })))))
      ).flat();
      const received = await reader.read(server, from, published.length, { 'x-topics': t });
      expect(ids(received)).toEqual(ids([...published].sort((a, b) => comparePositions(a.position, b.position))));
    });

    it("never delivers one tenant's events to another", async () => {
      const t = topic('tenants');
      const from = await cursorBefore();
      const published = await server.publish(['acme', 'globex', 'acme', null, 'globex'].map((tenant, n) => ({ topic: t, tenant, payload: n })));
      for (const tenant of ['acme', 'globex']) {
        const received = await reader.read(server, from, 2, { 'x-tenant': tenant, 'x-topics': t });
        expect(ids(received)).toEqual(ids(published.filter((e) => e.tenant === tenant)));
      }
    });

    it('keeps topics apart', async () => {
      const [a, b] = [topic('a'), topic('b')];
      const from = await cursorBefore();
      const published = await server.publish([a, b, a, b, a].map((t, n) => ({ topic: t, payload: n })));
      expect(ids(await reader.read(server, from, 3, { 'x-topics': a }))).toEqual(ids(published.filter((e) => e.topic === a)));
    });

    it('resumes after a disconnect from the last cursor it received, missing nothing and repeating nothing', async () => {
      const t = topic('resume');
      const from = await cursorBefore();
      const first = await server.publish(Array.from({ length: 10 }, (_, n) => ({ topic: t, payload: n })));
      const before = await reader.read(server, from, 10, { 'x-topics': t });
      const second = await server.publish(Array.from({ length: 10 }, (_, n) => ({ topic: t, payload: 10 + n })));
      const after = await reader.read(server, before.at(-1)!.cursor, 10, { 'x-topics': t });
      expect([...ids(before), ...ids(after)]).toEqual(ids([...first, ...second]));
    });
  });
}

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
