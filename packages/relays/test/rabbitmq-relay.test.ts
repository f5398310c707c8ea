import {
  comparePositions,
  createRelay,
  listDeadLetters,
  publish,
  type OutboxEvent,
  type Relay,
  type RelayEvent,
  type RelayOptions,
  type Transport,
} from '@tidings/outbox';
import { rabbitmqTransport, retryQueueName, type RabbitmqTransport } from '@tidings/relays/rabbitmq';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { judge, waitUntil } from '../../../test/support/check.ts';
import { inCommitOrder, inTransaction } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';
import { shareBrokerPerTest, withBrokerToMyself } from '../../../test/support/rabbitmq-broker-lock.ts';
import { rabbitmqWorld, rawChannel, restartRabbitmq, startEffectConsumer, type RabbitmqWorld, type TestConsumer } from '../../../test/support/rabbitmq-setup.ts';
import { startRelayWorker, testRelayTimings, type WorkerProcess } from '../../../test/support/worker-process.ts';

let world: RabbitmqWorld;
const relays: Relay[] = [];
const consumers: TestConsumer[] = [];
const processes: WorkerProcess[] = [];
let relaySeq = 0;

beforeAll(async () => {
  world = await rabbitmqWorld('rmq_relay');
});
afterEach(async () => {
  await Promise.all(processes.splice(0).map((p) => p.kill('SIGKILL')));
  await Promise.all(relays.splice(0).map((relay) => relay.stop({ graceMs: 1_000 })));
  // Best effort: another file may be restarting the broker right now.
  const raw = await rawChannel().catch(() => undefined);
  for (const { consumer, queue } of consumers.splice(0)) {
    await consumer.close();
    for (const q of [queue, `${queue}.dead-letter`, retryQueueName(queue, 100)]) await raw?.channel.deleteQueue(q).catch(() => {});
  }
  await raw?.close();
});
afterAll(async () => {
  await world?.close();
});

const newTopic = (label: string) => `e2e.${label}.${randomBytes(4).toString('hex')}`;

function startRelay(topic: string, transport: Transport, options: Partial<RelayOptions> = {}): { relay: Relay; events: RelayEvent[] } {
  const events: RelayEvent[] = [];
  const relay = createRelay({
    name: `rabbitmq-${++relaySeq}`,
    database: world.outbox.db,
    schema: world.schema,
    transport,
    topics: [topic],
    pollIntervalMs: 100,
    leaseTtlMs: 2_000,
    heartbeatIntervalMs: 300,
    retry: { minDelayMs: 20, maxDelayMs: 500, retries: 1_000 },
    onEvent: (event) => events.push(event),
    ...options,
  });
  relays.push(relay);
  return { relay, events };
}

/** `transactions` business transactions of `perTransaction` events over 7 keys; every fifth rolls back. Returns the committed events in commit order. */
async function runWorkload(topic: string, transactions: number, perTransaction: number, pauseMs = 0): Promise<OutboxEvent[]> {
  const committed: OutboxEvent[] = [];
  for (let t = 0; t < transactions; t++) {
    const input = Array.from({ length: perTransaction }, (_, i) => ({ topic, key: `key-${(t * perTransaction + i) % 7}`, payload: { t, i } }));
    if (t % 5 === 4) {
      await inTransaction(world.outbox.pool, async (client) => {
        await publish(client, input, { schema: world.schema });
        throw new Error('rolled back on purpose');
      }).catch(() => {});
    } else {
      committed.push(...(await inTransaction(world.outbox.pool, (client) => publish(client, input, { schema: world.schema }))));
    }
    if (pauseMs > 0) await sleep(pauseMs);
  }
  return inCommitOrder(world.outbox.db, world.schema, committed);
}

/** Waits until every committed event was applied, then lets strays and duplicates show up before judging. */
async function expectExactlyOnce(consumer: string, committed: readonly OutboxEvent[], timeoutMs = 60_000) {
  const wanted = new Set(committed.map((e) => e.eventId));
  await waitUntil(`all ${wanted.size} committed events were applied`, async () => {
    const applied = new Set((await world.effects(consumer)).map((r) => r.event_id));
    return [...wanted].every((id) => applied.has(id));
  }, timeoutMs);
  await sleep(500);
  const report = judge(committed, await world.effects(consumer));
  expect(report).toEqual({ lost: [], unexpected: [], duplicated: {}, outOfOrder: [] });
}

const skipped = (consumer: TestConsumer) => consumer.events.filter((e) => e.type === 'committed' && !e.applied).length;

describe('the path from a committed transaction to an exactly-once effect over RabbitMQ', () => {
  shareBrokerPerTest();

  it('applies every committed event exactly once, in commit order per key, and never a rolled-back one', async () => {
    const topic = newTopic('happy');
    const consumer = await startEffectConsumer(world, { name: 'happy', bindings: [topic] });
    consumers.push(consumer);
    const { relay } = startRelay(topic, rabbitmqTransport({ url: services.rabbitmq }));
    await relay.start();

    const committed = await runWorkload(topic, 25, 20);

    await expectExactlyOnce('happy', committed);
  });

  it('applies each effect once when the relay dies after RabbitMQ confirmed a batch and before its cursor moved', async () => {
    const topic = newTopic('relay-crash');
    const consumer = await startEffectConsumer(world, { name: 'relay-crash', bindings: [topic] });
    consumers.push(consumer);
    const inner = rabbitmqTransport({ url: services.rabbitmq });
    let crashes = 0;
    // Everything of the batch is confirmed by the broker, then the relay "dies": the engine sees a
    // failed send and sends the batch again, as a restarted relay would from its saved cursor.
    const crashing: Transport = {
      name: inner.name,
      capabilities: inner.capabilities,
      async send(batch, signal) {
        const outcomes = await inner.send(batch, signal);
        if (crashes < 5 && outcomes.every((o) => o.status === 'delivered')) {
          crashes++;
          throw new Error('relay died after the broker confirmed');
        }
        return outcomes;
      },
      close: () => inner.close(),
    };
    const { relay } = startRelay(topic, crashing);
    await relay.start();

    const committed = await runWorkload(topic, 10, 10);

    await expectExactlyOnce('relay-crash', committed);
    expect(crashes).toBe(5);
    expect(inner.stats().acked).toBeGreaterThan(committed.length);
    await waitUntil('every duplicate the crashes caused was skipped by the inbox', async () => skipped(consumer) === inner.stats().acked - committed.length);
  });

  it('applies each effect once when a relay process is killed mid-stream and another takes over', async () => {
    const topic = newTopic('sigkill');
    const consumer = await startEffectConsumer(world, { name: 'sigkill', bindings: [topic] });
    consumers.push(consumer);
    const committed = await runWorkload(topic, 50, 40);
    const relay = `rabbitmq-proc-${++relaySeq}`;

    const startRelayProcess = (worker: string): WorkerProcess =>
      startRelayWorker({
        databaseUrl: services.postgres,
        relay: { ...testRelayTimings, name: relay, schema: world.schema, topics: [topic], workerId: worker, retry: { minDelayMs: 20, maxDelayMs: 200, retries: 1000 } },
        transport: { kind: 'rabbitmq', options: { url: services.rabbitmq, reconnect: { minDelayMs: 50, maxDelayMs: 500 } } },
      });
    const first = startRelayProcess('first');
    processes.push(first);
    await first.waitForDelivered(200);
    await first.kill('SIGKILL');
    const second = startRelayProcess('second');
    processes.push(second);

    await expectExactlyOnce('sigkill', committed, 90_000);
    console.info(`sigkill: the first relay reported ${first.delivered()} delivered before SIGKILL; the consumer skipped ${skipped(consumer)} duplicates`);
  });

  it('never counts an unroutable event as delivered: a dead letter at once with unroutable "failed"', async () => {
    const topic = newTopic('unroutable-failed');
    const { relay, events } = startRelay(topic, rabbitmqTransport({ url: services.rabbitmq, unroutable: 'failed' }));
    await relay.start();
    const [event] = await inTransaction(world.outbox.pool, (client) => publish(client, [{ topic, payload: { nobody: 'listens' } }], { schema: world.schema }));

    const letters = await waitUntil('the event is a dead letter', async () => {
      const found = await listDeadLetters(world.outbox.db, { schema: world.schema, relay: relay.name });
      return found.length > 0 && found;
    });
    expect(letters[0]).toMatchObject({ eventId: event!.eventId });
    expect(letters[0]!.errors[0]!.message).toMatch(/reached no queue.*NO_ROUTE/);
    expect(events.filter((e) => e.type === 'delivered')).toEqual([]);
  });

  it('never counts an unroutable event as delivered: retried with unroutable "retry" until a queue is bound', async () => {
    const topic = newTopic('unroutable-retry');
    const { relay, events } = startRelay(topic, rabbitmqTransport({ url: services.rabbitmq }));
    await relay.start();
    const committed = await inTransaction(world.outbox.pool, (client) => publish(client, [{ topic, key: 'k', payload: 1 }, { topic, key: 'k', payload: 2 }], { schema: world.schema }));

    await waitUntil('the relay retried', async () => events.filter((e) => e.type === 'retry').length >= 3);
    expect(events.filter((e) => e.type === 'delivered')).toEqual([]);
    const consumer = await startEffectConsumer(world, { name: 'late-queue', bindings: [topic] });
    consumers.push(consumer);

    await expectExactlyOnce('late-queue', committed);
  });
});

describe('the path from a committed transaction to an exactly-once effect when RabbitMQ restarts', () => {
  it('delivers everything across a real RabbitMQ restart, applying each effect once', { timeout: 180_000 }, () => withBrokerToMyself(async () => {
    const topic = newTopic('restart');
    const consumer = await startEffectConsumer(world, { name: 'restart', bindings: [topic] });
    consumers.push(consumer);
    const transport: RabbitmqTransport = rabbitmqTransport({ url: services.rabbitmq, reconnect: { minDelayMs: 100, maxDelayMs: 1_000 } });
    const { relay } = startRelay(topic, transport);
    await relay.start();

    const writing = runWorkload(topic, 60, 10, 50);
    // Restart once the whole path works (the transport and the consumer are connected), not after a
    // guessed delay, and keep writing afterwards, so that the relay must send on a new connection.
    await waitUntil('the first effects were applied', async () => (await world.effects('restart')).length > 0, 60_000);
    await restartRabbitmq();
    const committed = [...(await writing), ...(await runWorkload(topic, 5, 10))];

    await expectExactlyOnce('restart', committed, 120_000);
    expect(transport.stats().connects).toBeGreaterThanOrEqual(2);
    expect(consumer.events.filter((e) => e.type === 'connected').length).toBeGreaterThanOrEqual(2);
  }));
});
