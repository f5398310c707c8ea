import { createRelay, listDeadLetters, publish, type Relay, type RelayEvent } from '@tidings/outbox';
import { webhookTransport } from '@tidings/relays/webhook';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startWebhookServer, type TestWebhookServer, loopbackOnly } from '@tidings/relays/testing';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';

// A receiver that answers 429 with Retry-After to events in the middle of a batch: every event's
// every retry must wait as long as it asked, also after the events before it were delivered.
let outbox: TestOutbox;
const stops: Array<() => Promise<void>> = [];

beforeAll(async () => {
  outbox = await freshOutbox('webhook_retry_after', { partitions: 1 });
});
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});
afterAll(() => outbox.close());

describe('Retry-After from a webhook receiver', () => {
  it('is honoured for every event of a batch, not only the first: each answered 429 waits the time it asked before it is sent again', async () => {
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    // Per event id: when each request arrived, and when it was answered 429.
    const requests = new Map<string, number[]>();
    const throttledAt = new Map<string, number[]>();
    const server: TestWebhookServer = await startWebhookServer((req, res) => {
      const id = String(req.headers['webhook-id']);
      const seen = requests.get(id) ?? [];
      seen.push(Date.now());
      requests.set(id, seen);
      // Every event but the first is answered 429 the first time it comes, then accepted.
      if (requests.size > 1 && seen.length === 1) {
        throttledAt.set(id, [...(throttledAt.get(id) ?? []), Date.now()]);
        res.writeHead(429, { 'retry-after': '1' }).end();
      } else {
        res.writeHead(204).end();
      }
    });
    stops.push(() => server.close());
    const events: RelayEvent[] = [];
    const relay: Relay = createRelay({
      name: 'retry-after',
      database: outbox.db,
      schema: outbox.schema,
      transport: webhookTransport({ url: server.url, secrets: [secret], addressPolicy: loopbackOnly }),
      pollIntervalMs: 100,
      // Backoff alone would send again within 10-100 ms.
      retry: { minDelayMs: 10, maxDelayMs: 100 },
      onEvent: (event) => events.push(event),
    });
    stops.push(() => relay.stop({ graceMs: 1_000 }));
    const published = await inTransaction(outbox.pool, (c) =>
      publish(c, Array.from({ length: 5 }, (_, i) => ({ topic: 't', key: 'k', payload: i })), { schema: outbox.schema }),
    );
    await relay.start();
    await waitUntil('every event delivered', async () => published.every((e) => (requests.get(e.eventId)?.length ?? 0) >= (e === published[0] ? 1 : 2)), 30_000);

    const gaps = published.slice(1).map((e) => requests.get(e.eventId)![1]! - throttledAt.get(e.eventId)![0]!);
    console.info(`gaps between a 429 with Retry-After: 1 and the next attempt of the same event: ${gaps.join(', ')} ms`);
    expect(gaps.filter((gap) => gap < 950)).toEqual([]);
    // Each wait was reported with the delay it honoured, and nothing became a dead letter.
    const waits = events.filter((e) => e.type === 'unavailable');
    expect(waits).toHaveLength(published.length - 1);
    expect(waits.every((e) => e.delayMs >= 1_000)).toBe(true);
    expect(await listDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name })).toEqual([]);
  });
});
