import {
  checkpointSource,
  consumeKafka,
  encodeEvent,
  kafkaHeaders,
  kafkaTransport,
  type KafkaConsumerEvent,
  type KafkaConsumerMode,
  type KafkaLibrary,
  type KafkaTransport,
} from '@tidings/relays/kafka';
import { testEvents } from '@tidings/relays/testing';
import { ConfigError, type OutboxEvent } from '@tidings/outbox';
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { inTransaction } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';
import { kafkaWorld, repeated, startEffectConsumer, startKafkaConsumerWorker, type EffectRow, type KafkaWorld, type TestConsumer } from '../../../test/support/kafka-world.ts';

describe.each(['kafkajs', 'platformatic'] as KafkaLibrary[])('the Kafka consumer helper with %s', (library) => {
  let world: KafkaWorld;
  let transport: KafkaTransport;
  const consumers: TestConsumer[] = [];

  beforeAll(async () => {
    world = await kafkaWorld(`kafka_consumer_${library}`, services.kafka);
    transport = kafkaTransport({ brokers: services.kafka, client: { logLevel: 'nothing' } });
  });
  afterEach(async () => {
    await Promise.all(consumers.splice(0).map(({ consumer }) => consumer.close()));
  });
  afterAll(async () => {
    await transport?.close();
    await world?.close();
  });

  async function produce(events: readonly OutboxEvent[]): Promise<void> {
    const outcomes = await transport.send(events, AbortSignal.timeout(20_000));
    expect(outcomes.every((o) => o.status === 'delivered')).toBe(true);
  }

  async function consume(options: Parameters<typeof startEffectConsumer>[1]): Promise<TestConsumer> {
    // Group ids of their own per library: the two clients' groups never meet on the broker.
    const consumer = await startEffectConsumer(world, { library, ...options, groupId: `${options.groupId ?? options.name}.${library}` });
    consumers.push(consumer);
    return consumer;
  }

  async function waitForEffects(consumer: string, count: number, timeoutMs = 30_000): Promise<EffectRow[]> {
    return waitUntil(`${consumer} applied ${count} effects`, async () => {
      const rows = await world.effects(consumer);
      return rows.length >= count && rows;
    }, timeoutMs);
  }

  /** `partition@offset` of each application, to compare with the records of the topic. */
  const placesOf = (rows: readonly EffectRow[]) => rows.map((r) => `${r.partition}@${r.record_offset}`);

  async function checkpointOf(consumer: string, topic: string, partition = 0): Promise<string | undefined> {
    const { rows } = await world.outbox.pool.query<{ position: string }>(
      `SELECT position FROM "${world.schema}".checkpoints WHERE consumer = $1 AND source = $2`,
      [consumer, checkpointSource({ topic, partition })],
    );
    return rows[0]?.position;
  }

  it('applies each event once in inbox mode, even when the topic holds it twice', async () => {
    const topic = await world.topic('duplicates', 2);
    const events = testEvents(30, { topic, key: (i) => `k-${i % 3}` });
    await produce(events);
    await produce(events.slice(10, 20)); // a relay that resent a batch
    const { events: seen } = await consume({ name: 'duplicates', topics: [topic] });

    await waitUntil('all 40 records were handled', async () => seen.filter((e) => e.type === 'committed').reduce((n, e) => n + (e.type === 'committed' ? e.records : 0), 0) === 40);
    const effects = await world.effects('duplicates');
    expect(repeated(effects.map((r) => r.event_id))).toEqual({});
    expect(new Set(effects.map((r) => r.event_id))).toEqual(new Set(events.map((e) => e.eventId)));
    for (const key of ['k-0', 'k-1', 'k-2']) {
      expect(effects.filter((r) => r.key === key).map((r) => r.event_id)).toEqual(events.filter((e) => e.key === key).map((e) => e.eventId));
    }
  });

  for (const mode of ['inbox', 'checkpoint'] as KafkaConsumerMode[]) {
    it(`does not commit past a record whose handler swallowed a SQL error (${mode} mode): it is retried, then applied once, in order`, async () => {
      const topic = await world.topic(`swallow-${mode}`, 1);
      const events = testEvents(5, { topic, key: () => 'k' });
      await produce(events);
      const name = `swallow-${mode}`;
      let swallowed = 0;
      const { events: seen } = await consume({
        name,
        topics: [topic],
        mode,
        handler: async (client: pg.PoolClient, event) => {
          await client.query(`INSERT INTO "${world.schema}".effects (consumer, event_id, key, partition, record_offset) VALUES ($1, $2, $3, $4, $5)`, [
            name, event.eventId, event.key, event.delivery.partition, event.delivery.offset,
          ]);
          // A careless handler: the error aborts the transaction, and is swallowed.
          if (event.eventId === events[2]!.eventId && swallowed++ < 2) await client.query('SELECT 1/0').catch(() => {});
        },
      });

      const effects = await waitForEffects(name, events.length);
      expect(effects.map((r) => r.event_id)).toEqual(events.map((e) => e.eventId));
      // The first swallow failed the whole run, which was then applied record by record; the second
      // failed the record alone: one counted retry, with the reason.
      const retries = seen.filter((e) => e.type === 'retry-scheduled');
      expect(retries.map((e) => e.type === 'retry-scheduled' && [e.offset, e.attempt])).toEqual([['2', 1]]);
      expect(retries.every((e) => e.type === 'retry-scheduled' && /did not commit|current transaction is aborted/.test(e.error.message))).toBe(true);
    });
  }

  for (const mode of ['inbox', 'checkpoint'] as KafkaConsumerMode[]) {
    // Concurrent: most of each is waiting for the dead member's session to expire.
    it.concurrent(`applies each record once in ${mode} mode when the consumer process dies between its database commit and its offset commit`, async ({ expect, onTestFinished }) => {
      const topic = await world.topic(`crash-${mode}`, 2);
      const events = testEvents(120, { topic, key: (i) => `k-${i % 5}` });
      await produce(events);
      const name = `crash-${mode}-${library}`;
      const env = { KAFKA_BROKERS: services.kafka, TIDINGS_LIBRARY: library, TIDINGS_SCHEMA: world.schema, TIDINGS_TOPIC: topic, TIDINGS_CONSUMER: name, TIDINGS_MODE: mode, TIDINGS_BATCH: '10' };

      const first = startKafkaConsumerWorker(`${name}-1`, { ...env, TIDINGS_CRASH_AFTER_COMMITS: '3' });
      onTestFinished(() => first.kill());
      expect(await first.exited).toBe('SIGKILL');
      const appliedBeforeCrash = (await world.effects(name)).length;
      expect(appliedBeforeCrash).toBeGreaterThanOrEqual(30);
      const second = startKafkaConsumerWorker(`${name}-2`, env);
      onTestFinished(() => second.kill());

      const effects = await waitForEffects(name, events.length);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const final = await world.effects(name);
      expect(repeated(placesOf(final)), 'records applied more than once').toEqual({});
      expect(final.length).toBe(events.length);
      expect(new Set(effects.map((r) => r.event_id))).toEqual(new Set(events.map((e) => e.eventId)));
      for (const key of ['k-0', 'k-4']) expect(final.filter((r) => r.key === key).map((r) => r.event_id)).toEqual(events.filter((e) => e.key === key).map((e) => e.eventId));
      if (mode === 'checkpoint') {
        const ends = await world.admin.fetchTopicOffsets(topic);
        for (const { partition, high } of ends) expect(await checkpointOf(name, topic, partition)).toBe(high);
      } else {
        // The records committed before the crash came again, and the inbox skipped them.
        await waitUntil('the replacement reported its commits', async () => second.lines.some((l) => l.type === 'committed'));
        const skipped = second.lines.reduce((n, l) => n + (l.type === 'committed' ? Number(l.records) - Number(l.applied) : 0), 0);
        expect(skipped).toBeGreaterThan(0);
      }
    });
  }

  it('reads committed records only: a record of an aborted Kafka transaction is never applied', async () => {
    const topic = await world.topic('transactions', 1);
    const [aborted, committed] = [testEvents(3, { topic, key: 'k' }), testEvents(3, { topic, key: 'k' })];
    const producer = world.kafka.producer({ transactionalId: `tidings-test-${topic}`, idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    try {
      for (const [events, end] of [[aborted, 'abort'], [committed, 'commit']] as const) {
        const transaction = await producer.transaction();
        const messages = events.map((event) => encodeEvent(event, topic, 1_000_000)).map(({ key, value, headers }) => ({ key, value, headers: { ...headers } }));
        await transaction.send({ topic, messages });
        await transaction[end]();
      }
    } finally {
      await producer.disconnect();
    }
    const tail = testEvents(2, { topic, key: 'k' });
    await produce(tail);
    await consume({ name: 'transactions', topics: [topic] });

    const effects = await waitForEffects('transactions', committed.length + tail.length);
    await Promise.all(consumers.splice(0).map(({ consumer }) => consumer.close()));
    expect((await world.effects('transactions')).map((r) => r.event_id)).toEqual([...committed, ...tail].map((e) => e.eventId));
    expect(effects.some((r) => aborted.some((e) => e.eventId === r.event_id))).toBe(false);
  });

  it('consumes the topics that match a pattern when it starts', async () => {
    const tag = randomBytes(3).toString('hex');
    const topics = [await world.topic(`pattern-${tag}-a`, 1), await world.topic(`pattern-${tag}-b`, 2)];
    const events = topics.flatMap((topic) => testEvents(4, { topic, key: 'k' }));
    await produce(events);
    await consume({ name: 'pattern', topics: [new RegExp(`\\.pattern-${tag}-[ab]\\.`)] });

    const effects = await waitForEffects('pattern', events.length);
    expect(new Set(effects.map((r) => r.event_id))).toEqual(new Set(events.map((e) => e.eventId)));
  });

  it('lets a second member join the group mid-stream: no effect is lost or applied twice, and each key keeps its order', async () => {
    const topic = await world.topic('rebalance', 4);
    const events = testEvents(300, { topic, key: (i) => `k-${i % 8}` });
    await produce(events.slice(0, 100));
    const first = await consume({ name: 'rebalance', topics: [topic], batchSize: 10 });
    await waitForEffects('rebalance', 30);
    // Records keep coming while the second member joins and the group rebalances.
    const joining = consume({ name: 'rebalance', topics: [topic], batchSize: 10 });
    await produce(events.slice(100, 200));
    const second = await joining;
    await waitUntil('the second member got partitions', async () => second.events.some((e) => e.type === 'assigned' && e.partitions.length > 0));
    await produce(events.slice(200));
    await waitForEffects('rebalance', events.length);
    // Closing lets every transaction in progress end, so a late second application would show.
    await Promise.all([first.consumer.close(), second.consumer.close()]);

    const effects = await world.effects('rebalance');
    expect(repeated(effects.map((r) => r.event_id)), 'events applied more than once').toEqual({});
    expect(new Set(effects.map((r) => r.event_id))).toEqual(new Set(events.map((e) => e.eventId)));
    for (let k = 0; k < 8; k++) {
      expect(effects.filter((r) => r.key === `k-${k}`).map((r) => r.event_id)).toEqual(events.filter((e) => e.key === `k-${k}`).map((e) => e.eventId));
    }
    const applied = (seen: readonly KafkaConsumerEvent[]) => seen.reduce((n, e) => n + (e.type === 'committed' ? e.applied : 0), 0);
    expect(applied(second.events), 'events the second member applied').toBeGreaterThan(0);
    expect(applied(first.events) + applied(second.events)).toBe(events.length);
  });

  it('moves each partition to the offset stored in the database in checkpoint mode, whatever Kafka has for the group', async () => {
    const topic = await world.topic('stored', 1);
    const first = testEvents(30, { topic, key: 'k' });
    await produce(first);
    const initial = await consume({ name: 'stored', groupId: 'stored-a', topics: [topic], mode: 'checkpoint' });
    await waitForEffects('stored', 30);
    await initial.consumer.close();
    expect(await checkpointOf('stored', topic)).toBe('30');

    // A new group starts at the first record as far as Kafka knows: the checkpoint wins.
    const second = testEvents(10, { topic, key: 'k' });
    await produce(second);
    const fromStart = await consume({ name: 'stored', groupId: 'stored-b', topics: [topic], mode: 'checkpoint', fromBeginning: true });
    await waitForEffects('stored', 40);
    expect(fromStart.events).toContainEqual({ type: 'resumed', topic, partition: 0, offset: '30' });
    await fromStart.consumer.close();

    // A new group that would start at the end: moved back to the checkpoint, nothing is skipped.
    const third = testEvents(10, { topic, key: 'k' });
    await produce(third);
    await consume({ name: 'stored', groupId: 'stored-c', topics: [topic], mode: 'checkpoint', fromBeginning: false });
    const effects = await waitForEffects('stored', 50);
    expect(effects.map((r) => r.event_id)).toEqual([...first, ...second, ...third].map((e) => e.eventId));
  });

  it('rolls back and resumes from the stored offset in checkpoint mode when another worker moved the checkpoint under it', async () => {
    const topic = await world.topic('fenced', 1);
    const events = testEvents(40, { topic, key: 'k' });
    await produce(events);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let blocked = false;
    const { events: seen } = await consume({
      name: 'fenced',
      topics: [topic],
      mode: 'checkpoint',
      batchSize: 5,
      // Offset 12 (in the transaction of 10 to 14) waits until "another worker" has moved on.
      before: async (event) => {
        if (event.delivery.offset !== '12' || blocked) return;
        blocked = true;
        await released;
      },
    });
    await waitUntil('offset 12 is being handled', async () => blocked);
    // The other worker applied 10 to 24 and moved the checkpoint from 10 to 25.
    const source = checkpointSource({ topic, partition: 0 });
    await world.outbox.pool.query(`UPDATE "${world.schema}".checkpoints SET position = '25' WHERE consumer = 'fenced' AND source = $1 AND position = '10'`, [source]);
    for (let offset = 10; offset < 25; offset++) {
      await world.outbox.pool.query(`INSERT INTO "${world.schema}".effects (consumer, event_id, key, partition, record_offset) VALUES ('fenced', $1, 'k', 0, $2)`, [events[offset]!.eventId, String(offset)]);
    }
    release();

    const effects = await waitForEffects('fenced', 40);
    expect(repeated(placesOf(effects)), 'records applied more than once').toEqual({});
    expect(seen).toContainEqual({ type: 'resumed', topic, partition: 0, offset: '25' });
    expect(await checkpointOf('fenced', topic)).toBe('40');
  });

  it('retries a failing handler with its partition waiting, then copies the record to the dead-letter topic after its attempts and goes on', async () => {
    const topic = await world.topic('poison', 1);
    const deadLetterTopic = await world.topic('poison-dead', 1);
    const events = testEvents(8, { topic, key: 'k' });
    await produce(events);
    const runs: number[] = [];
    const { events: seen } = await consume({
      name: 'poison',
      topics: [topic],
      deadLetterTopic,
      retry: { attempts: 3, minDelayMs: 20, maxDelayMs: 50 },
      before: (event) => {
        if (event.delivery.offset !== '3') return;
        runs.push(event.attempt);
        throw new Error(`handler refused ${event.eventId}`);
      },
    });

    const effects = await waitForEffects('poison', 7);
    expect(effects.map((r) => r.event_id)).toEqual(events.filter((_, i) => i !== 3).map((e) => e.eventId));
    // The first run is in a batch with the records around it; when it fails the batch is applied
    // record by record at once, the failing record's second run among them, then after a delay.
    expect(runs).toEqual([1, 2, 3]);
    expect(seen.filter((e) => e.type === 'retry-scheduled').map((e) => e.type === 'retry-scheduled' && [e.offset, e.attempt])).toEqual([['3', 2]]);
    const [letter] = await world.readTopic(deadLetterTopic);
    expect(letter).toMatchObject({ key: 'k', eventId: events[3]!.eventId });
    expect(letter!.headers).toMatchObject({
      [kafkaHeaders.deadLetterReason]: 'handler-failed',
      [kafkaHeaders.source]: `${topic}/0@3`,
      [kafkaHeaders.attempts]: '3',
      [kafkaHeaders.error]: `Error: handler refused ${events[3]!.eventId}`,
    });
  });

  it('copies a record it cannot read to the dead-letter topic at once, in checkpoint mode too, and goes on', async () => {
    const topic = await world.topic('unreadable', 1);
    const deadLetterTopic = await world.topic('unreadable-dead', 1);
    const producer = world.kafka.producer();
    await producer.connect();
    await producer.send({ topic, messages: [{ key: 'k', value: 'this is not JSON' }, { key: 'k', value: null }] });
    await producer.disconnect();
    const good = testEvents(2, { topic, key: 'k' });
    await produce(good);
    const { events: seen } = await consume({ name: 'unreadable', topics: [topic], deadLetterTopic, mode: 'checkpoint' });

    const effects = await waitForEffects('unreadable', 2);
    expect(effects.map((r) => r.event_id)).toEqual(good.map((e) => e.eventId));
    const letters = await world.readTopic(deadLetterTopic);
    expect(letters.map((l) => [l.headers[kafkaHeaders.deadLetterReason], l.headers[kafkaHeaders.source]])).toEqual([
      ['invalid-record', `${topic}/0@0`],
      ['invalid-record', `${topic}/0@1`],
    ]);
    expect(letters[0]!.headers[kafkaHeaders.error]).toMatch(/InvalidRecordError: .*not UTF-8 JSON/);
    expect(seen.filter((e) => e.type === 'dead-lettered')).toHaveLength(2);
    expect(await checkpointOf('unreadable', topic)).toBe('4');
  });

  it('does not use up attempts while its database fails, and applies the event once the database is back', async () => {
    const topic = await world.topic('db-down', 1);
    const deadLetterTopic = await world.topic('db-down-dead', 1);
    const [event] = testEvents(1, { topic, key: 'k' });
    await produce([event!]);
    let databaseUp = false;
    const seen: KafkaConsumerEvent[] = [];
    const consumer = await consumeKafka({
      library,
      brokers: services.kafka,
      client: { logLevel: 'nothing' },
      topics: [topic],
      consumer: 'db-down',
      groupId: `db-down.${library}`,
      schema: world.schema,
      deadLetterTopic,
      retry: { attempts: 1, minDelayMs: 20, maxDelayMs: 100 },
      database: async <R>(fn: (client: pg.PoolClient) => Promise<R>): Promise<R> => {
        if (!databaseUp) throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
        return inTransaction(world.outbox.pool, fn);
      },
      handler: async (client, received) => {
        await client.query(`INSERT INTO "${world.schema}".effects (consumer, event_id, key) VALUES ('db-down', $1, $2)`, [received.eventId, received.key]);
      },
      onEvent: (e) => seen.push(e),
    });
    consumers.push({ consumer, events: seen });

    await waitUntil('several attempts failed on the database', async () => seen.filter((e) => e.type === 'error').length >= 4);
    databaseUp = true;
    expect((await waitForEffects('db-down', 1)).map((r) => r.event_id)).toEqual([event!.eventId]);
    expect(seen.filter((e) => e.type === 'retry-scheduled' || e.type === 'dead-lettered')).toEqual([]);
  });
});

describe('choosing the Kafka consumer client', () => {
  const base = { brokers: 'localhost:9092', topics: ['t'], consumer: 'c', database: (() => {}) as never, handler: () => {} };

  it('refuses an unknown library with a ConfigError that names the choices', async () => {
    await expect(consumeKafka({ ...base, library: 'rdkafka' as KafkaLibrary })).rejects.toThrow(ConfigError);
    await expect(consumeKafka({ ...base, library: 'rdkafka' as KafkaLibrary })).rejects.toThrow(/library.*"kafkajs" or "platformatic", got "rdkafka"/);
  });

  it('refuses kafkajs-only settings with library platformatic, and connectTo with kafkajs', async () => {
    await expect(consumeKafka({ ...base, library: 'platformatic', client: { socketFactory: () => null as never } })).rejects.toThrow(/client\.socketFactory.*kafkajs setting/);
    await expect(consumeKafka({ ...base, library: 'platformatic', kafka: {} as never })).rejects.toThrow(/kafka.*kafkajs client/);
    await expect(consumeKafka({ ...base, connectTo: (broker) => broker })).rejects.toThrow(/connectTo.*library: "platformatic" only/);
  });

  it('refuses, with library platformatic, topic patterns that match no topic', async () => {
    const pattern = new RegExp(`^no-such-topic-${randomBytes(4).toString('hex')}$`);
    await expect(consumeKafka({ ...base, library: 'platformatic', brokers: services.kafka, topics: [pattern] })).rejects.toThrow(/topics.*no topic matches/);
  });
});
