import { createRelay, listDeadLetters, publish, retry, type Relay, type RelayEvent } from '@tidings/outbox';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { createSink, received, tableTransport } from '../../../test/support/table-transport.ts';

// One partition, so the events of different keys share a batch and the refused one comes after a
// delivered prefix.
let outbox: TestOutbox;
const relays: Relay[] = [];

beforeAll(async () => {
  outbox = await freshOutbox('retry_after', { partitions: 1 });
  await createSink(outbox.pool, outbox.schema);
});
afterEach(async () => {
  await Promise.all(relays.splice(0).map((r) => r.stop({ graceMs: 1000 })));
});
afterAll(() => outbox.close());

describe('a refused event after a delivered prefix', () => {
  it('counts every retry toward its dead letter and waits the Retry-After it was given each time', async () => {
    const refusedAt: number[] = [];
    const events: RelayEvent[] = [];
    const relay = createRelay({
      name: 'retry-after-prefix',
      database: outbox.db,
      schema: outbox.schema,
      transport: tableTransport(outbox.pool, outbox.schema, {
        fault: (e) => {
          if (e.payload !== 'refused') return undefined;
          refusedAt.push(Date.now());
          return retry(new Error('slow down'), 300);
        },
      }),
      pollIntervalMs: 100,
      // Backoff alone would try again within 5-20 ms.
      retry: { retries: 2, minDelayMs: 5, maxDelayMs: 20 },
      onEvent: (e) => events.push(e),
    });
    relays.push(relay);
    const [, refused] = await inTransaction(outbox.pool, (c) =>
      publish(c, [{ topic: 't', key: 'a', payload: 'first' }, { topic: 't', key: 'b', payload: 'refused' }, { topic: 't', key: 'c', payload: 'after' }], { schema: outbox.schema }),
    );
    await relay.start();
    await waitUntil('the refused event is a dead letter', async () => (await listDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name })).length === 1);
    const [letter] = await listDeadLetters(outbox.db, { schema: outbox.schema, relay: relay.name });

    // 1 + retries sends, each one counted, the first of them right after "first" was delivered.
    expect(refusedAt).toHaveLength(3);
    expect(letter!.eventId).toBe(refused!.eventId);
    expect(letter!.errors.map((e) => e.attempt)).toEqual([1, 2, 3]);
    const gaps = refusedAt.slice(1).map((at, i) => at - refusedAt[i]!);
    expect(gaps.filter((gap) => gap < 295)).toEqual([]);
    const retries = events.filter((e) => e.type === 'retry');
    expect(retries.map((e) => [e.eventId, e.attempt, e.delayMs >= 300])).toEqual([
      [refused!.eventId, 1, true],
      [refused!.eventId, 2, true],
    ]);
    await waitUntil('the event after it was delivered', async () => (await received(outbox.pool, outbox.schema)).length === 2);
    expect((await received(outbox.pool, outbox.schema)).map((r) => r.payload)).toEqual(['first', 'after']);
  });
});
