import { amqpHeaders, consumeRabbitmq, retryQueueName, type RabbitmqConsumerEvent } from '@tidings/relays/rabbitmq';
import { createFaultProxy, type FaultProxy, testEvent } from '@tidings/relays/testing';
import { Kysely, PostgresDialect, sql } from 'kysely';
import type pg from 'pg';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { services } from '../../../test/support/env.ts';
import { shareBrokerPerTest } from '../../../test/support/rabbitmq-broker-lock.ts';
import {
  drainQueue,
  rabbitmqWorld,
  rawChannel,
  startEffectConsumer,
  type RabbitmqWorld,
  type TestConsumer,
} from '../../../test/support/rabbitmq-setup.ts';

let world: RabbitmqWorld;
let raw: Awaited<ReturnType<typeof rawChannel>>;
let proxy: FaultProxy;
const consumers: TestConsumer[] = [];

// Registered first, so that the lock is released last, after the cleanup below.
shareBrokerPerTest();
beforeAll(async () => {
  world = await rabbitmqWorld('rmq_consumer');
  const target = new URL(services.rabbitmq);
  proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 5672) } });
});
// A channel of its own per test: another file may restart the broker between tests.
beforeEach(async () => {
  raw = await rawChannel();
});
afterEach(async () => {
  proxy.refuseNew(false);
  proxy.resume();
  await Promise.all(consumers.splice(0).map(async ({ consumer, queue }) => {
    await consumer.close();
    for (const q of [queue, `${queue}.dead-letter`, ...[50, 100, 1_000, 10_000, 60_000].map((d) => retryQueueName(queue, d))]) await raw.channel.deleteQueue(q).catch(() => {});
  }));
  await raw.close();
});
afterAll(async () => {
  await proxy?.close();
  await world?.close();
});

function proxiedUrl(): string {
  const url = new URL(services.rabbitmq);
  url.hostname = '127.0.0.1';
  url.port = String(proxy.port);
  return url.toString();
}

async function start(name: string, options: Omit<Parameters<typeof startEffectConsumer>[1], 'name' | 'bindings'> = {}) {
  const topic = `consumer.${name}.${randomBytes(4).toString('hex')}`;
  const started = await startEffectConsumer(world, { name, bindings: [topic], ...options });
  consumers.push(started);
  return { ...started, topic };
}

/** Publishes one message as the relay would, or as a misbehaving producer might. */
function publishRaw(topic: string, body: Buffer | string | object, properties: Record<string, unknown> = {}): void {
  const content = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  raw.channel.publish('tidings', topic, content, { persistent: true, contentType: 'application/json', ...properties });
}

const committed = (events: RabbitmqConsumerEvent[], applied: boolean) => events.filter((e) => e.type === 'committed' && e.applied === applied).length;

describe('the RabbitMQ consumer helper', () => {
  it('retries a failing handler after a delay doubling from retry.minDelayMs, and applies the event once it succeeds', async () => {
    const { topic, events } = await start('flaky', { fail: ({ attempt }) => attempt < 3, retry: { attempts: 5, minDelayMs: 100, maxDelayMs: 1_000 } });
    const eventId = testEvent({ topic }).eventId;
    const sentAt = Date.now();
    publishRaw(topic, { flaky: true }, { messageId: eventId, type: topic, headers: { traceparent: '00-aa-bb-01' } });

    await waitUntil('the event was applied', async () => (await world.effects('flaky')).length === 1);
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(300);
    const retries = events.filter((e) => e.type === 'retry-scheduled');
    expect(retries.map((e) => e.type === 'retry-scheduled' && [e.attempt, e.delayMs])).toEqual([[1, 100], [2, 200]]);
    expect(events.find((e) => e.type === 'committed')).toMatchObject({ eventId, attempt: 3, applied: true });
  });

  it('dead-letters a message whose handler keeps failing, with the last error, and keeps consuming', async () => {
    const { topic, queue, events } = await start('poison', { fail: ({ payload }) => (payload as { poison?: boolean }).poison === true, retry: { attempts: 3, minDelayMs: 50, maxDelayMs: 50 } });
    const poison = testEvent({ topic }).eventId;
    const healthy = testEvent({ topic }).eventId;
    publishRaw(topic, { poison: true }, { messageId: poison, type: topic });
    publishRaw(topic, { poison: false }, { messageId: healthy, type: topic });

    const [letter] = await drainQueue(raw.channel, `${queue}.dead-letter`, 1);
    expect(letter!.properties.messageId).toBe(poison);
    expect(letter!.properties.headers).toMatchObject({
      [amqpHeaders.deadLetterReason]: 'handler-failed',
      [amqpHeaders.queue]: queue,
      [amqpHeaders.attempt]: 3,
    });
    expect(String(letter!.properties.headers![amqpHeaders.error])).toContain(`handler refused ${poison} on attempt 3`);
    expect(JSON.parse(letter!.content.toString())).toEqual({ poison: true });
    await waitUntil('the healthy event was applied', async () => (await world.effects('poison')).length === 1);
    expect((await world.effects('poison'))[0]!.event_id).toBe(healthy);
    expect(events.filter((e) => e.type === 'dead-lettered')).toHaveLength(1);
  });

  it('dead-letters input it cannot read, saying why, and keeps consuming', async () => {
    const { topic, queue } = await start('bad-input');
    publishRaw(topic, 'this is not JSON', { messageId: 'not-json' });
    publishRaw(topic, { fine: 'but no id' }, {});
    publishRaw(topic, Buffer.from([0xff, 0xfe, 0x7b]), { messageId: 'not-utf8' });
    publishRaw(topic, '{"a":1}', { messageId: 'wrong-type', contentType: 'text/plain' });
    const good = testEvent({ topic }).eventId;
    publishRaw(topic, { good: true }, { messageId: good, type: topic });

    const letters = await drainQueue(raw.channel, `${queue}.dead-letter`, 4);
    const reasons = Object.fromEntries(letters.map((l) => [l.properties.messageId ?? '(none)', l.properties.headers![amqpHeaders.deadLetterReason]]));
    expect(reasons).toEqual({ 'not-json': 'invalid-json', '(none)': 'missing-message-id', 'not-utf8': 'invalid-json', 'wrong-type': 'unsupported-content-type' });
    for (const letter of letters) expect(String(letter.properties.headers![amqpHeaders.error])).toMatch(/InvalidMessageError: .{10,}/);
    await waitUntil('the good event was applied', async () => (await world.effects('bad-input')).map((r) => r.event_id).includes(good));
  });

  it('does not use up attempts while the database fails, and applies the event once it is back', async () => {
    const topic = `consumer.db-down.${randomBytes(4).toString('hex')}`;
    let databaseUp = false;
    const events: RabbitmqConsumerEvent[] = [];
    const pool = world.outbox.pool;
    const queue = `test.db-down.${randomBytes(4).toString('hex')}`;
    const consumer = await consumeRabbitmq({
      url: services.rabbitmq,
      queue,
      bindings: [topic],
      consumer: 'db-down',
      schema: world.schema,
      retry: { attempts: 2, minDelayMs: 50, maxDelayMs: 50 },
      reconnect: { minDelayMs: 20, maxDelayMs: 100 },
      database: async <R>(fn: (trx: pg.PoolClient) => Promise<R>): Promise<R> => {
        if (!databaseUp) throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          const result = await fn(client);
          await client.query('COMMIT');
          return result;
        } catch (error) {
          await client.query('ROLLBACK');
          throw error;
        } finally {
          client.release();
        }
      },
      handler: async (trx, event) => {
        await trx.query(`INSERT INTO "${world.schema}".effects (consumer, event_id) VALUES ('db-down', $1)`, [event.eventId]);
      },
      onEvent: (event) => events.push(event),
    });
    consumers.push({ consumer, events, queue });
    const eventId = testEvent({ topic }).eventId;
    publishRaw(topic, {}, { messageId: eventId, type: topic });

    await waitUntil('several attempts failed on the database', async () => events.filter((e) => e.type === 'error').length >= 4);
    databaseUp = true;
    await waitUntil('the event was applied', async () => (await world.effects('db-down')).length === 1);
    expect(events.filter((e) => e.type === 'retry-scheduled' || e.type === 'dead-lettered')).toEqual([]);
  });

  it('resumes consuming after its connection is cut', async () => {
    const { topic, events } = await start('reconnect', { url: proxiedUrl() });
    const first = testEvent({ topic }).eventId;
    publishRaw(topic, {}, { messageId: first, type: topic });
    await waitUntil('the first event was applied', async () => (await world.effects('reconnect')).length === 1);

    proxy.refuseNew(true);
    proxy.cutAll();
    const second = testEvent({ topic }).eventId;
    publishRaw(topic, {}, { messageId: second, type: topic });
    await sleep(300);
    proxy.refuseNew(false);

    await waitUntil('the second event was applied', async () => (await world.effects('reconnect')).length === 2);
    expect(events.filter((e) => e.type === 'connected').length).toBeGreaterThanOrEqual(2);
  });

  it('applies the events of one key in queue order while handling other keys concurrently', async () => {
    const { topic } = await start('ordered', { prefetch: 50 });
    const sent: { id: string; key: string }[] = [];
    for (let i = 0; i < 200; i++) {
      const key = `k-${i % 4}`;
      const id = testEvent({ topic }).eventId;
      sent.push({ id, key });
      publishRaw(topic, { i }, { messageId: id, type: topic, headers: { [amqpHeaders.key]: key } });
    }
    await waitUntil('all applied', async () => (await world.effects('ordered')).length === sent.length);
    const effects = await world.effects('ordered');
    for (const key of ['k-0', 'k-1', 'k-2', 'k-3']) {
      expect(effects.filter((e) => e.key === key).map((e) => e.event_id)).toEqual(sent.filter((s) => s.key === key).map((s) => s.id));
    }
  });

  it('gives a kysely database handler a kysely transaction', async () => {
    const kysely = new Kysely<{ effects: { consumer: string; event_id: string } }>({ dialect: new PostgresDialect({ pool: world.outbox.pool }) }).withSchema(world.schema);
    const topic = `consumer.kysely.${randomBytes(4).toString('hex')}`;
    const queue = `test.kysely.${randomBytes(4).toString('hex')}`;
    const events: RabbitmqConsumerEvent[] = [];
    const consumer = await consumeRabbitmq({
      url: services.rabbitmq,
      queue,
      bindings: [topic],
      consumer: 'kysely',
      schema: world.schema,
      database: kysely,
      handler: async (trx, event) => {
        expect(trx.isTransaction).toBe(true);
        await trx.insertInto('effects').values({ consumer: 'kysely', event_id: event.eventId }).execute();
        await sql`select 1`.execute(trx);
      },
      onEvent: (event) => events.push(event),
    });
    consumers.push({ consumer, events, queue });
    const eventId = testEvent({ topic }).eventId;
    publishRaw(topic, {}, { messageId: eventId, type: topic });
    await waitUntil('applied', async () => (await world.effects('kysely')).length === 1);
  });
});
