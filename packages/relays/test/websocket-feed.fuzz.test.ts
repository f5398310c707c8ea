import { encodePosition } from '@tidings/outbox';
import { openWebSocketFeed } from '@tidings/relays/testing';
import type { FeedEvent } from '@tidings/relays/websocket';
import fc from 'fast-check';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { cursorArbitrary } from '../../../test/support/feed-fuzz.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';

/** Generated conversations per run (`FUZZ_RUNS` for more). */
const numRuns = Number(process.env.FUZZ_RUNS ?? 100);
/** How long the client listens after its last message before it hangs up. */
const listenMs = 60;
const tenants = ['acme', 'globex'];
const topics = ['fuzz.orders', 'fuzz.billing'];

let feed: FeedServer;
const heard: FeedEvent[] = [];
let cursors: string[] = [];

beforeAll(async () => {
  feed = await startFeedServer('fuzz_websocket', { websocket: { maxInFlight: 5, onEvent: (event) => heard.push(event) } });
  const published = await feed.publish(Array.from({ length: 30 }, (_, n) => ({ topic: topics[n % 2]!, tenant: tenants[n % 3] ?? null, payload: n })));
  cursors = published.map((e) => encodePosition(e.position));
});
afterAll(async () => {
  await feed?.close();
});

/** Anything a client may send: well-formed messages with hostile fields, other JSON, text, bytes. */
function messageArbitrary(): fc.Arbitrary<string | Buffer> {
  const cursor = fc.oneof(cursorArbitrary(cursors), fc.constantFrom(...cursors), fc.bigInt({ min: 0n, max: 2n ** 66n }).map((n) => `c${n}-${n}`));
  const subscribe = fc.record(
    {
      type: fc.constant('subscribe'),
      after: fc.oneof(cursor, fc.constantFrom('start', 'now'), fc.integer(), fc.constant(null)),
      topics: fc.oneof(fc.constant(topics), fc.array(fc.oneof(fc.constantFrom(...topics, 'fuzz.*', '*', 'a b', ''), fc.string({ maxLength: 12 })), { maxLength: 3 }), fc.string()),
      maxInFlight: fc.oneof(fc.integer({ min: -2, max: 8 }), fc.double(), fc.constant('3')),
    },
    { requiredKeys: ['type'] },
  );
  const ack = fc.record({ type: fc.constant('ack'), cursor: fc.oneof(cursor, fc.integer()) }, { requiredKeys: ['type'] });
  return fc.oneof(
    { weight: 4, arbitrary: subscribe.map((m) => JSON.stringify(m)) },
    { weight: 4, arbitrary: ack.map((m) => JSON.stringify(m)) },
    { weight: 1, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 20 }).map((bytes) => Buffer.from(bytes)) },
  );
}

/** A well-formed subscription (a real cursor, start or now) followed by acknowledgements, some of cursors not sent. */
function conversationArbitrary(): fc.Arbitrary<(string | Buffer)[]> {
  const subscribe = fc
    .record({ after: fc.constantFrom(...cursors, 'start', 'now'), topics: fc.constantFrom(topics, ['fuzz.*'], [topics[0]!]), maxInFlight: fc.integer({ min: 1, max: 6 }) })
    .map((m) => JSON.stringify({ type: 'subscribe', ...m }));
  const ack = fc.constantFrom(...cursors).map((cursor) => JSON.stringify({ type: 'ack', cursor }));
  return fc.tuple(subscribe, fc.array(ack, { maxLength: 5 })).map(([first, acks]) => [first, ...acks]);
}

describe('fuzzing the WebSocket feed', () => {
  it("answers every generated conversation with the caller's own events in log order, or an error message and a 4xxx close saying what is wrong; never a server fault", { timeout: 300_000 }, async () => {
    const closes = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...tenants), fc.oneof(fc.array(messageArbitrary(), { minLength: 1, maxLength: 6 }), conversationArbitrary()), async (tenant, messages) => {
        const reader = await openWebSocketFeed(`${feed.wsOrigin}/ws`, null, { 'x-tenant': tenant });
        let closed: { code: number; reason: string } | undefined;
        void reader.closed.then((c) => (closed = c));
        for (const message of messages) {
          if (closed) break;
          reader.socket.send(message);
          await sleep(5);
        }
        await sleep(listenMs);
        reader.close();
        await reader.closed;
        const said = `${tenant} ${JSON.stringify(messages.map(String))} -> ${closed?.code} ${JSON.stringify(reader.messages).slice(0, 400)}`;
        closes.set(closed?.code ?? 0, (closes.get(closed?.code ?? 0) ?? 0) + 1);
        const error = reader.error();
        if (closed && closed.code !== 1006) {
          // The feed closed it: always after an error message whose status is in the code.
          expect(error, said).toBeDefined();
          expect(closed.code, said).toBe(4000 + error!.status);
          expect(closed.reason, said).toBe(error!.error);
          expect(error!.status, said).toBeLessThan(500);
          expect(['invalid-cursor', 'invalid-request', 'forbidden', 'cursor-expired'], said).toContain(error!.error);
        } else {
          expect(error, said).toBeUndefined();
        }
        // Whatever it received are its tenant's events, in log order, each once.
        for (const event of reader.events) expect(event.tenant, said).toBe(tenant);
        const positions = reader.events.map((e) => cursors.indexOf(e.cursor));
        expect(positions, said).toEqual([...positions].sort((a, b) => a - b));
        expect(new Set(positions).size, said).toBe(positions.length);
      }),
      { numRuns },
    );
    await waitUntil('every connection is gone', () => feed.websocket.connections === 0);
    expect(heard).toEqual([]);
    console.log('close codes of the generated conversations (1006: still open when the client hung up):', Object.fromEntries(closes));
  });
});
