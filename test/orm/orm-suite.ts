import { migrateInbox, inbox } from '@tidings/inbox';
import { createRelay, NotInTransactionError, publish, TransactionAbortedError, type OutboxEvent, type Relay, type TransactionHandle } from '@tidings/outbox';
import { testEvent } from '@tidings/relays/testing';
import type { TransactionSource } from '@tidings/relays/polling';
import { generateWebhookSecret, signWebhook, webhookReceiver, type WebhookMessage } from '@tidings/relays/webhook';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { judge, waitUntil } from '../support/check.ts';
import { collectingTransport } from '../support/collecting-transport.ts';
import { countEvents, freshOutbox, type TestOutbox } from '../support/db.ts';

/** The business tables every suite writes through the library: `orders` (id primary key) and `effects` (no key, so a double apply shows). */
export type BusinessTable = 'orders' | 'effects';

/** What one library (or one kind of handle of it) offers the shared suite. */
export interface OrmKit<Trx extends TransactionHandle> {
  /** Runs `fn` in a transaction of the library's own making: commits when it resolves, rolls back when it throws. */
  transaction<R>(fn: (trx: Trx) => Promise<R>): Promise<R>;
  /** txid_current() read through the library's own API inside `trx`. */
  txid(trx: Trx): Promise<string>;
  /** Writes a row through the library's own API inside `trx`. */
  insert(trx: Trx, table: BusinessTable, id: string): Promise<void>;
  /** Runs a statement that fails (division by zero) through the library and swallows its error, as a careless handler would. */
  swallowError(trx: Trx): Promise<void>;
  /** The library's own transaction source (a database, client or entity manager), as a consumer helper's `database`. */
  readonly source: TransactionSource;
  /** The library's handles outside any transaction: tidings must refuse them. */
  readonly outside: readonly TransactionHandle[];
  close(): Promise<void>;
}

class PlannedRollback extends Error {}

/** Compiles only when A and B are the same type (each assignable to the other, neither `any`): `sameType<A, B>(true)`. */
export function sameType<A, B>(same: 0 extends 1 & A ? false : [A] extends [B] ? ([B] extends [A] ? true : false) : false): void {
  void same;
}

/**
 * One suite per library: publish() and inbox.handle() run on the library's connection, inside its
 * transaction, against real PostgreSQL; a relay delivers exactly what committed.
 */
export function describeOrmHandle<Trx extends TransactionHandle>(name: string, make: (schema: string) => Promise<OrmKit<Trx>>): void {
  describe(name, () => {
    let outbox: TestOutbox;
    let kit: OrmKit<Trx>;
    let schema: string;
    let seq = 0;
    const next = (what: string) => `${what}-${++seq}`;
    const rows = async (table: BusinessTable, id: string) =>
      (await outbox.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".${table} WHERE id = $1`, [id])).rows[0]!.n;
    const inboxRows = async (consumer: string) =>
      (await outbox.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".inbox WHERE consumer = $1`, [consumer])).rows[0]!.n;

    beforeAll(async () => {
      outbox = await freshOutbox('orm', { partitions: 2 });
      schema = outbox.schema;
      await migrateInbox(outbox.db, { schema });
      await outbox.db.query(`CREATE TABLE "${schema}".orders (id text PRIMARY KEY)`);
      await outbox.db.query(`CREATE TABLE "${schema}".effects (id text NOT NULL)`);
      kit = await make(schema);
    });
    afterAll(async () => {
      await kit?.close();
      await outbox?.close();
    });

    it('publishes on the connection and inside the transaction of the library (same txid_current())', async () => {
      const id = next('order');
      const { txid, event } = await kit.transaction(async (trx) => {
        await kit.insert(trx, 'orders', id);
        const [event] = await publish(trx, { topic: 'orm.same-tx', key: id, payload: { id } }, { schema });
        return { txid: await kit.txid(trx), event: event! };
      });
      const { rows: stored } = await outbox.db.query<{ tx_id: string }>(`SELECT tx_id::text AS tx_id FROM "${schema}".events WHERE event_id = $1`, [event.eventId]);
      expect(stored).toEqual([{ tx_id: txid }]);
      expect(await rows('orders', id)).toBe(1);
    });

    it('delivers through a relay exactly the events of the transaction that committed, none of the one rolled back', async () => {
      const topic = next('orm.relayed');
      const doomed = next('doomed');
      await expect(
        kit.transaction(async (trx) => {
          await kit.insert(trx, 'orders', doomed);
          await publish(trx, [{ topic, key: doomed, payload: { id: doomed } }], { schema });
          throw new PlannedRollback('business rule failed');
        }),
      ).rejects.toBeInstanceOf(PlannedRollback);
      const kept = next('kept');
      const committed: OutboxEvent[] = await kit.transaction(async (trx) => {
        await kit.insert(trx, 'orders', kept);
        return publish(trx, [{ topic, key: kept, payload: { id: kept, n: 1 } }, { topic, key: kept, payload: { id: kept, n: 2 } }], { schema });
      });
      expect(await rows('orders', doomed)).toBe(0);
      expect(await rows('orders', kept)).toBe(1);

      const transport = collectingTransport();
      const relay: Relay = createRelay({ name: next('orm-relay'), database: outbox.db, schema, transport, topics: [topic], pollIntervalMs: 50 });
      await relay.start();
      try {
        await waitUntil('both committed events are delivered', () => transport.got.length >= committed.length);
      } finally {
        await relay.stop({ graceMs: 1000 });
      }
      const arrivals = transport.got.map((e) => ({ event_id: e.eventId, key: e.key }));
      expect(judge(committed, arrivals)).toEqual({ lost: [], unexpected: [], duplicated: {}, outOfOrder: [] });
      expect(transport.got.map((e) => e.payload)).toEqual([{ id: kept, n: 1 }, { id: kept, n: 2 }]);
    });

    it("refuses the library's handles outside a transaction, before writing anything", async () => {
      expect(kit.outside.length).toBeGreaterThan(0);
      for (const outside of kit.outside) {
        const before = await countEvents(outbox);
        const error = await publish(outside, { topic: 'orm.outside', payload: 1 }, { schema }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(NotInTransactionError);
        expect((error as Error).message).toMatch(/publish\(\) must run inside the caller's transaction/);
        expect(await countEvents(outbox)).toBe(before);
        const box = inbox({ consumer: next('outside'), schema });
        const handled = await box.handle(outside, 'evt-outside', () => 'ran').catch((e: unknown) => e);
        expect(handled).toBeInstanceOf(NotInTransactionError);
        expect(await inboxRows(box.consumer)).toBe(0);
      }
    });

    it("saves an ordered source's checkpoint in the library's transaction: kept on commit, gone on rollback", async () => {
      const box = inbox({ consumer: next('ordered'), schema });
      const source = next('orders/0');
      await expect(
        kit.transaction(async (trx) => {
          await box.saveCheckpoint(trx, { source, position: '7', expected: null });
          throw new PlannedRollback('caller rolls back');
        }),
      ).rejects.toBeInstanceOf(PlannedRollback);
      expect(await box.loadCheckpoint(outbox.db, source)).toBeNull();
      await kit.transaction((trx) => box.saveCheckpoint(trx, { source, position: '7', expected: null }));
      expect(await box.loadCheckpoint(outbox.db, source)).toBe('7');
    });

    it("applies an event once through the inbox in the library's transaction: the duplicate is skipped", async () => {
      const box = inbox({ consumer: next('billing'), schema });
      const eventId = next('evt');
      const apply = () => kit.transaction((trx) => box.handle(trx, eventId, (t) => kit.insert(t, 'effects', eventId)));
      expect(await apply()).toEqual({ applied: true, result: undefined });
      expect(await apply()).toEqual({ applied: false });
      expect(await rows('effects', eventId)).toBe(1);
      expect(await inboxRows(box.consumer)).toBe(1);
    });

    it('rolls the inbox mark back with the transaction, so the event is applied when it comes again', async () => {
      const box = inbox({ consumer: next('billing'), schema });
      const eventId = next('evt');
      await expect(
        kit.transaction(async (trx) => {
          await box.handle(trx, eventId, (t) => kit.insert(t, 'effects', eventId));
          throw new PlannedRollback('caller rolls back');
        }),
      ).rejects.toBeInstanceOf(PlannedRollback);
      expect(await inboxRows(box.consumer)).toBe(0);
      expect(await rows('effects', eventId)).toBe(0);
      expect(await kit.transaction((trx) => box.handle(trx, eventId, (t) => kit.insert(t, 'effects', eventId)))).toEqual({ applied: true, result: undefined });
      expect(await rows('effects', eventId)).toBe(1);
    });

    const sources: Array<[string, () => TransactionSource]> = [
      ['a function running the library\'s transaction', () => <R>(work: (trx: Trx) => Promise<R>) => kit.transaction(work)],
      ["the library's own database, client or entity manager", () => kit.source],
    ];
    it.each(sources)('serves a consumer helper (webhook receiver) whose database is %s', async (_, source) => {
      const secret = generateWebhookSecret();
      const consumer = next('hooks');
      const receiver = webhookReceiver({
        secrets: secret,
        consumer,
        schema,
        database: source(),
        handler: (trx, message: WebhookMessage) => kit.insert(trx as Trx, 'effects', message.eventId),
      });
      const event = testEvent({ topic: 'orm.webhook', key: next('k'), payload: { total: 1 } });
      const body = JSON.stringify({ id: event.eventId, topic: event.topic, key: event.key, tenant: null, createdAt: event.createdAt.toISOString(), headers: {}, payload: event.payload });
      const timestamp = Math.floor(Date.now() / 1000);
      const headers = { 'webhook-id': event.eventId, 'webhook-timestamp': String(timestamp), 'webhook-signature': signWebhook({ id: event.eventId, timestamp, body }, secret) };
      try {
        for (let delivery = 0; delivery < 2; delivery++) {
          expect((await receiver.handle({ method: 'POST', headers, body })).status).toBe(200);
        }
      } finally {
        await receiver.close();
      }
      expect(await rows('effects', event.eventId)).toBe(1);
      expect(await inboxRows(consumer)).toBe(1);
    });

    it('refuses to report as applied a handler that swallowed a SQL error (the transaction is aborted)', async () => {
      const box = inbox({ consumer: next('careless'), schema });
      const eventId = next('evt');
      let refusal: unknown;
      const outcome = await kit
        .transaction(async (trx) => {
          refusal = await box
            .handle(trx, eventId, async (t) => {
              await kit.insert(t, 'effects', eventId);
              await kit.swallowError(t);
            })
            .catch((e: unknown) => e);
          throw refusal;
        })
        .catch((e: unknown) => e);
      expect(refusal).toBeInstanceOf(TransactionAbortedError);
      // The library's transaction fails too: with that error, or (postgres.js) with the one the handler swallowed.
      expect(outcome).toBeInstanceOf(Error);
      expect(await inboxRows(box.consumer)).toBe(0);
      expect(await rows('effects', eventId)).toBe(0);
    });
  });
}
