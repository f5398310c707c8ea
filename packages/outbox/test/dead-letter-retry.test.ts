import { createRelay, delivered, retryDeadLetters, type OutboxEvent, type Relay, type Transport } from '@tidings/outbox';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, type TestOutbox } from '../../../test/support/db.ts';

let outbox: TestOutbox;
beforeAll(async () => {
  outbox = await freshOutbox('dl_retry', { partitions: 2 });
});
afterAll(() => outbox?.close());

/** A destination that takes three lease times to acknowledge each send, and at most two events a send. */
function slowTransport(sendMs: number): Transport & { sends: string[][] } {
  const sends: string[][] = [];
  return {
    name: 'slow',
    capabilities: { orderedPerKey: true, persistent: true, maxBatchSize: 2 },
    sends,
    async send(batch: readonly OutboxEvent[]) {
      sends.push(batch.map((e) => e.eventId));
      await sleep(sendMs);
      return batch.map(() => delivered);
    },
    async close() {},
  };
}

describe('retrying dead letters', () => {
  it('sends each letter once while a slow send outlasts the claim, in batches the transport accepts, with two workers', async () => {
    const { schema } = outbox;
    const leaseTtlMs = 400;
    const ids = Array.from({ length: 5 }, (_, i) => `evt-${i}`);
    for (const id of ids) {
      await outbox.db.query(
        `INSERT INTO "${schema}".dead_letters (relay, partition, event_id, topic, payload, headers, event_created_at, errors)
         VALUES ('slow', 0, $1, 'dl.retry', '1', '{}', now(), '[]')`,
        [id],
      );
    }
    const transport = slowTransport(3 * leaseTtlMs);
    const workers: Relay[] = [0, 1].map(() => createRelay({ name: 'slow', database: outbox.db, schema, transport, leaseTtlMs, pollIntervalMs: 50 }));
    await Promise.all(workers.map((w) => w.start()));
    try {
      expect(await retryDeadLetters(outbox.db, { schema, relay: 'slow' })).toBe(5);
      await waitUntil('every letter was delivered and removed', async () => (await outbox.db.query(`SELECT 1 FROM "${schema}".dead_letters`)).rowCount === 0, 30_000);
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
    }
    expect(transport.sends.every((batch) => batch.length <= 2)).toBe(true);
    expect(transport.sends.flat().sort()).toEqual(ids);
  });
});
