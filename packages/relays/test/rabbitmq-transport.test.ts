import type { OutboxEvent, SendOutcome } from '@tidings/outbox';
import { RabbitmqConnectionError, RabbitmqEncodeError, RabbitmqUnroutableError, type RabbitmqTransportEvent } from '@tidings/relays/rabbitmq';
import { assertAllArrived, testEvent, testEvents, waitForIds, rabbitmqHarness, type RabbitmqHarness } from '@tidings/relays/testing';
import amqp from 'amqplib';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { services } from '../../../test/support/env.ts';
import { shareBrokerPerTest, withBrokerToMyself } from '../../../test/support/rabbitmq-broker-lock.ts';
import { rabbitmqctl, restartRabbitmq } from '../../../test/support/rabbitmq-setup.ts';

let harness: RabbitmqHarness;
beforeAll(async () => {
  harness = await rabbitmqHarness({ url: services.rabbitmq });
});
afterAll(async () => {
  await harness?.close();
});

const topic = (label: string) => `transport.${label}.${randomBytes(4).toString('hex')}`;
const ids = (events: readonly OutboxEvent[]) => events.map((e) => e.eventId);
const send = (transport: { send: (b: readonly OutboxEvent[], s: AbortSignal) => Promise<readonly SendOutcome[]> }, batch: readonly OutboxEvent[], ms = 30_000) =>
  transport.send(batch, AbortSignal.timeout(ms));

describe('the RabbitMQ transport', () => {
  shareBrokerPerTest();

  it('never reports an unroutable event delivered, even interleaved with routable ones in one batch', async () => {
    const routed = topic('routed');
    const nowhere = topic('nowhere');
    const subscription = await harness.subscribe(routed);
    const transport = await harness.createTransport();
    const batch = Array.from({ length: 300 }, (_, i) => testEvent({ topic: i % 3 === 1 ? nowhere : routed, key: `k-${i % 4}` }));

    const outcomes = await send(transport, batch);

    const wrong = batch.filter((e, i) => (outcomes[i]!.status === 'delivered') !== (e.topic === routed));
    expect(wrong.map((e) => `${e.topic}: ${outcomes[batch.indexOf(e)]!.status}`)).toEqual([]);
    for (const [i, event] of batch.entries()) {
      if (event.topic !== nowhere) continue;
      const outcome = outcomes[i]!;
      expect(outcome.status).toBe('retry');
      const error = (outcome as { error: Error }).error;
      expect(error).toBeInstanceOf(RabbitmqUnroutableError);
      expect(error).toMatchObject({ reason: 'no-route', eventId: event.eventId, exchange: 'tidings', routingKey: nowhere });
      expect(error.message).toContain('NO_ROUTE');
    }
    const expected = ids(batch.filter((e) => e.topic === routed));
    assertAllArrived(expected, await waitForIds(subscription, expected, 10_000));
    expect(transport.stats()).toMatchObject({ returned: 100, acked: 200 });
  });

  it('reports unroutable events as failed when configured to, so the relay dead-letters them at once', async () => {
    const transport = await harness.createTransport({ unroutable: 'failed' });
    const [outcome] = await send(transport, [testEvent({ topic: topic('unbound') })]);
    expect(outcome).toMatchObject({ status: 'failed', error: expect.any(RabbitmqUnroutableError) });
  });

  it('reports an event whose exchange does not exist as unroutable without disturbing the rest of the batch', async () => {
    const routed = topic('exchange-ok');
    const subscription = await harness.subscribe(routed);
    const missing = `tidings.missing.${randomBytes(4).toString('hex')}`;
    const transport = await harness.createTransport({
      route: (event) => ({ exchange: event.payload === 'lost' ? missing : 'tidings', routingKey: event.topic }),
    });
    const batch = Array.from({ length: 50 }, (_, i) => testEvent({ topic: routed, payload: i % 10 === 5 ? 'lost' : i }));

    const outcomes = await send(transport, batch);

    const delivered = batch.filter((_, i) => outcomes[i]!.status === 'delivered');
    expect(delivered.map((e) => e.payload)).not.toContain('lost');
    expect(delivered).toHaveLength(45);
    const problem = outcomes.find((o) => o.status !== 'delivered') as { error: Error };
    expect(problem.error).toMatchObject({ reason: 'no-exchange', exchange: missing });
    assertAllArrived(ids(delivered), await waitForIds(subscription, ids(delivered), 10_000));
    // The missing exchange was found by a probe, not by a publish that would have closed the channel.
    expect(transport.stats()).toMatchObject({ connects: 1, lost: 0 });
  });

  it('fails an event AMQP cannot carry and delivers the others of its batch', async () => {
    const routed = topic('encode');
    const subscription = await harness.subscribe(routed);
    const transport = await harness.createTransport();
    const [good1, bad, good2] = [
      testEvent({ topic: routed }),
      testEvent({ topic: routed, headers: { ['h'.repeat(300)]: 'too long a name' } }),
      testEvent({ topic: routed }),
    ];
    const outcomes = await send(transport, [good1!, bad!, good2!]);
    expect(outcomes.map((o) => o.status)).toEqual(['delivered', 'failed', 'delivered']);
    expect((outcomes[1] as { error: Error }).error).toBeInstanceOf(RabbitmqEncodeError);
    assertAllArrived([good1!.eventId, good2!.eventId], await waitForIds(subscription, [good1!.eventId, good2!.eventId], 10_000));
  });

  it('delivers the same when its observer throws', async () => {
    const routed = topic('observer');
    const subscription = await harness.subscribe(routed);
    let heard = 0;
    const transport = await harness.createTransport({
      onEvent: () => {
        heard++;
        throw new Error('observer bug');
      },
    });
    const events = testEvents(3, { topic: routed });
    const ids = events.map((e) => e.eventId);
    expect((await send(transport, events)).map((o) => o.status)).toEqual(['delivered', 'delivered', 'delivered']);
    assertAllArrived(ids, await waitForIds(subscription, ids, 10_000));
    expect(heard).toBeGreaterThan(0);
  });

  it('keeps at most maxUnconfirmed messages awaiting confirms', async () => {
    const routed = topic('window');
    const subscription = await harness.subscribe(routed);
    const transport = await harness.createTransport({ maxUnconfirmed: 5 });
    const events = testEvents(400, { topic: routed, key: (i) => `k-${i % 3}` });

    const outcomes = await Promise.all([send(transport, events.slice(0, 200)), send(transport, events.slice(200))]);

    expect(outcomes.flat().every((o) => o.status === 'delivered')).toBe(true);
    const stats = transport.stats();
    expect(stats.peakUnconfirmed).toBeLessThanOrEqual(5);
    expect(stats.windowWaits).toBeGreaterThan(0);
    assertAllArrived(ids(events), await waitForIds(subscription, ids(events), 10_000));
  });

  it('waits for drain when the socket backs up, reporting nothing delivered until the broker confirms', async () => {
    const routed = topic('drain');
    const subscription = await harness.subscribe(routed);
    const transport = await harness.createTransport({ maxUnconfirmed: 100_000, sendTimeoutMs: 120_000 });
    const warmUp = testEvent({ topic: routed });
    await send(transport, [warmUp]); // connected
    const blob = 'x'.repeat(64 * 1024);
    const events = testEvents(1_500, { topic: routed, payload: (i) => ({ i, blob }) });

    harness.proxy.stall();
    let settled = false;
    const sending = send(transport, events, 120_000).finally(() => {
      settled = true;
    });
    try {
      await waitUntil('publishing waited for drain', async () => transport.stats().drainWaits > 0, 30_000);
      await sleep(200);
      expect(settled).toBe(false);
    } finally {
      harness.proxy.resume();
    }
    const outcomes = await sending;
    expect(outcomes.filter((o) => o.status !== 'delivered')).toEqual([]);
    const all = [warmUp.eventId, ...ids(events)];
    assertAllArrived(all, await waitForIds(subscription, all, 60_000));
  });

  it('reports retry when confirms do not come within sendTimeoutMs, and reconnects for the next send', async () => {
    const routed = topic('timeout');
    const subscription = await harness.subscribe(routed);
    const transport = await harness.createTransport({ sendTimeoutMs: 500 });
    const warmUp = testEvent({ topic: routed });
    await send(transport, [warmUp]);
    const stuck = testEvents(20, { topic: routed });

    harness.proxy.stall();
    const started = Date.now();
    let outcomes: readonly SendOutcome[];
    try {
      outcomes = await send(transport, stuck);
    } finally {
      harness.proxy.resume();
    }
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(outcomes.every((o) => o.status === 'unavailable' && (o.error as RabbitmqConnectionError).reason === 'confirm-timeout')).toBe(true);

    const again = await send(transport, stuck);
    expect(again.every((o) => o.status === 'delivered')).toBe(true);
    expect(transport.stats().connects).toBe(2);
    const all = [warmUp.eventId, ...ids(stuck)];
    assertAllArrived(all, await waitForIds(subscription, all, 10_000), { allowDuplicates: true });
  });

  it('rejects sends after close() and closes idempotently', async () => {
    const transport = await harness.createTransport();
    await Promise.all([transport.close(), transport.close()]);
    await expect(send(transport, [testEvent({ topic: topic('closed') })])).rejects.toThrow(/closed/);
  });

  it('publishes persistent JSON messages with the event id, type, timestamp and headers a plain AMQP consumer can read', async () => {
    const routed = topic('plain');
    const connection = await amqp.connect(services.rabbitmq);
    try {
      const channel = await connection.createChannel();
      const { queue } = await channel.assertQueue('', { exclusive: true });
      await channel.bindQueue(queue, 'tidings', routed);
      const transport = await harness.createTransport();
      const event = testEvent({ topic: routed, key: 'order-1', tenant: 'acme', payload: { total: 42 }, headers: { traceparent: '00-abc-def-01', CC: 'not a route' } });
      expect(await send(transport, [event])).toEqual([{ status: 'delivered' }]);
      const message = await waitUntil('the message is in the queue', async () => (await channel.get(queue, { noAck: true })) || undefined);
      expect(JSON.parse(message.content.toString())).toEqual({ total: 42 });
      expect(message.properties).toMatchObject({
        messageId: event.eventId,
        type: routed,
        contentType: 'application/json',
        deliveryMode: 2,
        timestamp: Math.floor(event.createdAt.getTime() / 1000),
        headers: {
          traceparent: '00-abc-def-01',
          'x-tidings-key': 'order-1',
          'x-tidings-tenant': 'acme',
          'x-tidings-created-at': event.createdAt.toISOString(),
          // RabbitMQ reads a CC header as extra routing keys: the event's own travels escaped.
          'x-tidings-header:CC': 'not a route',
        },
      });
    } finally {
      await connection.close();
    }
  });
});

describe('the RabbitMQ transport when the broker itself fails', () => {
  it('answers retry at once while RabbitMQ blocks publishers, and delivers once the alarm clears', () => withBrokerToMyself(async () => {
    const routed = topic('blocked');
    const subscription = await harness.subscribe(routed);
    const seen: RabbitmqTransportEvent[] = [];
    const transport = await harness.createTransport({ onEvent: (event) => seen.push(event) });
    const warmUp = testEvent({ topic: routed });
    await send(transport, [warmUp]);
    const events = testEvents(10, { topic: routed });
    await rabbitmqctl('set_vm_memory_high_watermark', '0');
    try {
      await waitUntil('the broker blocked the connection', async () => {
        const [outcome] = await send(transport, events.slice(0, 1), 1_000).catch(() => [undefined]);
        return outcome?.status === 'unavailable' && (outcome.error as RabbitmqConnectionError).reason === 'blocked';
      });
    } finally {
      await rabbitmqctl('set_vm_memory_high_watermark', '0.4');
    }
    await waitUntil('everything was delivered after the alarm cleared', async () => (await send(transport, events)).every((o) => o.status === 'delivered'));
    const all = [warmUp.eventId, ...ids(events)];
    assertAllArrived(all, await waitForIds(subscription, all, 10_000), { allowDuplicates: true });
    expect(seen.map((e) => e.type)).toEqual(expect.arrayContaining(['connected', 'blocked', 'unblocked']));
  }));

  it('delivers everything across a real RabbitMQ restart when what was not confirmed is sent again', { timeout: 180_000 }, () => withBrokerToMyself(async () => {
    const routed = topic('restart');
    const subscription = await harness.subscribe(routed);
    const transport = await harness.createTransport();
    const events: OutboxEvent[] = [];
    let restarted = false;
    // Plays the relay, before, during and after the restart: new events keep coming, the delivered
    // prefix of each batch is done, the rest is sent again.
    const sending = (async () => {
      let pending: OutboxEvent[] = [];
      for (let afterRestart = 0; !restarted || afterRestart < 20 || pending.length > 0; afterRestart += restarted ? 1 : 0) {
        const fresh = testEvents(50, { topic: routed, key: (i) => `k-${i % 9}` });
        events.push(...fresh);
        pending.push(...fresh);
        const batch = pending.slice(0, 100);
        const outcomes = await send(transport, batch, 10_000).catch(() => []);
        const firstUndelivered = batch.findIndex((_, i) => outcomes[i]?.status !== 'delivered');
        pending = pending.slice(firstUndelivered === -1 ? batch.length : firstUndelivered);
        await sleep(firstUndelivered === -1 ? 20 : 200);
      }
    })();
    await sleep(300);
    await restartRabbitmq();
    restarted = true;
    await sending;

    assertAllArrived(ids(events), await waitForIds(subscription, ids(events), 60_000), { allowDuplicates: true });
    expect(transport.stats().connects).toBeGreaterThanOrEqual(2);
  }));
});
