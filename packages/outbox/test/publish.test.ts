import { ConfigError, InvalidEventError, logStart, NotInTransactionError, payloadJson, publish, readPartition, SchemaMissingError, type EventInput } from '@tidings/outbox';
import { Kysely, PostgresDialect } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { countEvents, freshOutbox, inCommitOrder, inTransaction, type TestOutbox } from '../../../test/support/db.ts';

let outbox: TestOutbox;
let kysely: Kysely<{ orders: { id: string; total: number } }>;

beforeAll(async () => {
  outbox = await freshOutbox('publish', { partitions: 8 });
  kysely = new Kysely({ dialect: new PostgresDialect({ pool: outbox.pool }) });
  await outbox.db.query(`CREATE TABLE "${outbox.schema}".orders (id text PRIMARY KEY, total int)`);
});
afterAll(async () => {
  await outbox.close();
});

describe('publish', () => {
  it('stores events in a kysely transaction together with the business row', async () => {
    const { schema } = outbox;
    const stored = await kysely.transaction().execute(async (trx) => {
      await trx.withSchema(schema).insertInto('orders').values({ id: 'k1', total: 5 }).execute();
      return publish(trx, { topic: 'orders.created', key: 'k1', payload: { id: 'k1', total: 5 }, headers: { traceparent: 'x' } }, { schema });
    });
    expect(stored).toHaveLength(1);
    const [event] = stored;
    expect(event!.eventId).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(event).toMatchObject({ topic: 'orders.created', key: 'k1', payload: { id: 'k1', total: 5 }, headers: { traceparent: 'x' }, tenant: null });
    const { rows } = await outbox.db.query(`SELECT event_id, topic, key, payload, headers FROM "${schema}".events WHERE event_id = $1`, [event!.eventId]);
    expect(rows).toEqual([{ event_id: event!.eventId, topic: 'orders.created', key: 'k1', payload: { id: 'k1', total: 5 }, headers: { traceparent: 'x' } }]);
  });

  it('stores many events of one call as one insert, in order, with their partitions', async () => {
    const { schema } = outbox;
    const events: EventInput[] = Array.from({ length: 50 }, (_, i) => ({ topic: 'bulk', key: `key-${i % 7}`, payload: { i } }));
    const stored = await inTransaction(outbox.pool, (client) => publish(client, events, { schema }));
    expect(stored.map((e) => e.payload)).toEqual(events.map((e) => e.payload));
    const ids = stored.map((e) => BigInt(e.position.id));
    expect(ids).toEqual([...ids].sort((a, b) => (a < b ? -1 : 1)));
    // Positions are given at COMMIT: publish returns them unnumbered; the commit numbers the transaction once.
    expect(new Set(stored.map((e) => e.position.seq))).toEqual(new Set(['0']));
    const placed = await inCommitOrder(outbox.db, schema, stored);
    expect(new Set(placed.map((e) => e.position.seq)).size).toBe(1);
    // Same key, same partition; the spread covers more than one partition.
    const byKey = new Map<string, Set<number>>();
    for (const e of stored) byKey.set(e.key!, (byKey.get(e.key!) ?? new Set()).add(e.partition));
    for (const partitions of byKey.values()) expect(partitions.size).toBe(1);
    expect(new Set(stored.map((e) => e.partition)).size).toBeGreaterThan(1);
    expect(stored.every((e) => e.partition >= 0 && e.partition < 8)).toBe(true);
  });

  it('leaves no event behind when the transaction rolls back', async () => {
    const { schema } = outbox;
    const before = await countEvents(outbox);
    await expect(
      kysely.transaction().execute(async (trx) => {
        await publish(trx, [{ topic: 'doomed', payload: 1 }, { topic: 'doomed', payload: 2 }], { schema });
        throw new Error('business rule failed');
      }),
    ).rejects.toThrow('business rule failed');
    expect(await countEvents(outbox)).toBe(before);
  });

  it('refuses a transaction argument that is no database handle with a ConfigError naming the kinds it accepts', async () => {
    // @ts-expect-error an object of no known handle shape is a type error
    const error = await publish({ begin: true }, { topic: 't', payload: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).toMatchObject({ option: 'trx', message: expect.stringMatching(/expected a kysely Transaction, a pg Client\/PoolClient inside BEGIN,.*postgres\.js.*Drizzle.*TypeORM.*MikroORM.*Prisma.*; got Object/) });
  });

  it('refuses a number as the transaction, at compile time and at run time', async () => {
    // @ts-expect-error a number is no transaction handle
    const error = await publish(42, { topic: 't', payload: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(/^invalid option "trx": expected a kysely Transaction.*; got number\.$/);
  });

  it("keeps the publisher's JSON text: relays read back the very bytes that were written", async () => {
    const { schema } = outbox;
    // jsonb would reorder these keys (shorter first) and write 1e21 out in full digits.
    const payload = { zebra: 1, a: { yy: [1.5, -0, 1e21, 'ü\n"'], b: null }, m: '' };
    const [stored] = await inTransaction(outbox.pool, (client) => publish(client, { topic: 'exact', key: 'exact-key', payload }, { schema }));
    // The watermark is cluster-wide: another test's open transaction may hold the event back a while.
    const read = await waitUntil('the event is readable', async () => {
      const page = await readPartition(outbox.db, schema, { partition: stored!.partition, after: logStart, limit: 1000, topics: ['exact'] });
      return page.events.find((e) => e.eventId === stored!.eventId);
    });
    expect(payloadJson(read)).toBe(JSON.stringify(payload));
    expect(read.payload).toEqual(JSON.parse(JSON.stringify(payload)));
    // A copy with its payload replaced (say, redacted) sends the replacement, not the stored text.
    expect(payloadJson({ ...read, payload: { redacted: true } })).toBe('{"redacted":true}');
  });

  it('sends one NOTIFY per partition written, however many events the call has', async () => {
    const { schema } = outbox;
    const listener = await outbox.pool.connect();
    const heard: string[] = [];
    listener.on('notification', (n) => heard.push(n.payload!));
    try {
      await listener.query(`LISTEN "${schema}_events"`);
      const stored = await inTransaction(outbox.pool, (client) =>
        publish(client, Array.from({ length: 40 }, (_, i) => ({ topic: 'wake', key: `k-${i % 5}`, payload: i })), { schema }),
      );
      const partitions = [...new Set(stored.map((e) => String(e.partition)))].sort();
      await waitUntil('the notifications arrived', async () => heard.length >= partitions.length);
      await listener.query('SELECT 1'); // anything still in flight arrives before this answer
      expect([...heard].sort()).toEqual(partitions);
    } finally {
      await listener.query('UNLISTEN *');
      listener.release();
    }
  });

  it('accepts null payloads, Dates and unicode', async () => {
    const { schema } = outbox;
    const when = new Date('2026-01-02T03:04:05.000Z');
    const [a, b] = await inTransaction(outbox.pool, (client) =>
      publish(client, [{ topic: 'misc', payload: null }, { topic: 'misc', payload: { when, text: 'zürich ✓ 日本' } }], { schema }),
    );
    expect(a!.payload).toBeNull();
    expect(b!.payload).toEqual({ when: when.toISOString(), text: 'zürich ✓ 日本' });
  });

  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  const invalid: [string, EventInput, InvalidEventError['reason'], RegExp][] = [
    ['an empty topic', { topic: '', payload: 1 }, 'invalid-topic', /topic "" is not valid/],
    ['a topic with spaces', { topic: 'orders created', payload: 1 }, 'invalid-topic', /is not valid/],
    ['a cyclic payload', { topic: 't', payload: cycle }, 'payload-not-json', /payload\.self refers back to itself/],
    ['a BigInt in the payload', { topic: 't', payload: { n: 1n } }, 'payload-not-json', /payload\.n is a BigInt/],
    ['a function in the payload', { topic: 't', payload: [() => 1] }, 'payload-not-json', /payload\[0\] is a function/],
    ['NaN in the payload', { topic: 't', payload: { x: Number.NaN } }, 'payload-not-json', /payload\.x is NaN/],
    ['a class instance in the payload', { topic: 't', payload: { m: new Map() } }, 'payload-not-json', /payload\.m is a Map/],
    ['an undefined payload', { topic: 't', payload: undefined }, 'payload-not-json', /pass null/],
    ['a NUL in a string', { topic: 't', payload: 'a\u0000b' }, 'payload-not-json', /NUL/],
    ['a NUL in a key', { topic: 't', payload: { 'bad\u0000key': 1 } }, 'payload-not-json', /key "bad\\u0000key" of payload contains a NUL/],
    ['a lone surrogate in a string', { topic: 't', payload: { s: 'half \ud83d' } }, 'payload-not-json', /payload\.s contains a lone UTF-16 surrogate/],
    ['a lone surrogate in a header', { topic: 't', payload: 1, headers: { h: '\udc00' } }, 'invalid-headers', /header "h"/],
    ['a payload over the limit', { topic: 't', payload: 'x'.repeat(2000) }, 'payload-too-large', /over the limit of 1024/],
    ['headers that are not strings', { topic: 't', payload: 1, headers: { n: 1 as unknown as string } }, 'invalid-headers', /header "n"/],
    ['an empty key', { topic: 't', payload: 1, key: '' }, 'invalid-key', /key must be a non-empty string/],
    ['a numeric tenant', { topic: 't', payload: 1, tenant: 7 as unknown as string }, 'invalid-tenant', /tenant must be/],
  ];
  it.each(invalid)('rejects %s with a named error and writes nothing of the call', async (_, bad, reason, message) => {
    const { schema } = outbox;
    const before = await countEvents(outbox);
    const error = await inTransaction(outbox.pool, (client) =>
      publish(client, [{ topic: 'fine', payload: 1 }, bad], { schema, maxPayloadBytes: 1024 }),
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidEventError);
    expect(error).toMatchObject({ reason, index: 1 });
    expect((error as Error).message).toMatch(message);
    expect(await countEvents(outbox)).toBe(before);
  });

  it('refuses a pool or a kysely instance outside a transaction, before writing', async () => {
    const { schema } = outbox;
    const before = await countEvents(outbox);
    await expect(publish(outbox.pool, { topic: 't', payload: 1 }, { schema })).rejects.toThrow(NotInTransactionError);
    await expect(publish(kysely, { topic: 't', payload: 1 }, { schema })).rejects.toThrow(NotInTransactionError);
    expect(await countEvents(outbox)).toBe(before);
  });

  it('says to run migrate when the schema is missing', async () => {
    await expect(
      inTransaction(outbox.pool, (client) => publish(client, { topic: 't', payload: 1 }, { schema: 'no_such_schema' })),
    ).rejects.toThrow(SchemaMissingError);
  });
});
