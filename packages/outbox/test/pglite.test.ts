import { PGlite } from '@electric-sql/pglite';
import { createRelay, migrate, pgliteDatabase, publish } from '@tidings/outbox';
import { describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { collectingTransport } from '../../../test/support/collecting-transport.ts';


describe('the embedded database (PGlite)', () => {
  it('runs the same migrations, publish and relay as PostgreSQL', async () => {
    const pglite = await PGlite.create();
    const db = pgliteDatabase(pglite);
    await migrate(db, { partitions: 4 });
    expect((await migrate(db, { partitions: 4 })).applied).toEqual([]);
    const transport = collectingTransport();
    const relay = createRelay({ name: 'embedded', database: db, transport, pollIntervalMs: 50, leaseTtlMs: 2000 });
    await relay.start();
    const published = await pglite.transaction((tx) =>
      publish(tx, [
        { topic: 'orders.created', key: 'o1', payload: { n: 1 } },
        { topic: 'orders.created', key: 'o1', payload: { n: 2 } },
      ]),
    );
    await expect(
      pglite.transaction(async (tx) => {
        await publish(tx, { topic: 'orders.created', key: 'o1', payload: { n: 'rolled back' } });
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    const more = await pglite.transaction((tx) => publish(tx, { topic: 'orders.paid', key: 'o1', payload: { n: 3 } }));
    await waitUntil('delivered', async () => transport.got.length >= 3);
    await new Promise((r) => setTimeout(r, 200));
    expect(transport.got.map((e) => e.eventId)).toEqual([...published, ...more].map((e) => e.eventId));
    await relay.stop();
    await pglite.close();
  });
});
