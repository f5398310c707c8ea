import { comparePositions, publish, type OutboxEvent } from '@tidings/outbox';
import { toExecutor } from '@tidings/outbox/internal';
import { kafkaHeaders } from '@tidings/relays/kafka';
import { amqpHeaders } from '@tidings/relays/rabbitmq';
import amqp from 'amqplib';
import kafkajs from 'kafkajs';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { judge, waitUntil } from '../../../test/support/check.ts';
import { inCommitOrder, inTransaction } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';
import { runTidings, startTidings, type CliProcess } from '../../../test/support/cli.ts';
import { shareBrokerPerTest } from '../../../test/support/rabbitmq-broker-lock.ts';

/** The repository's node_modules, linked into each temp folder so a `.ts` config can import '@tidings/relays' as in a user's project. */
const nodeModules = fileURLToPath(new URL('../../../node_modules', import.meta.url));

/** Undone after each test, last first. */
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});
// Other RabbitMQ test files restart the broker while holding this lock exclusively.
shareBrokerPerTest();

/** The command's log lines are what these tests read: at `info`, whatever the environment says. */
const info = { TIDINGS_LOG_LEVEL: 'info' };

/** Starts the `tidings` command in `cwd`; killed after the test if still running. */
function spawnTidings(args: string[], cwd: string, env: Record<string, string> = {}): CliProcess {
  const run = startTidings(args, { cwd, env: { ...info, ...env } });
  cleanups.push(() => run.kill());
  return run;
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A temp folder that looks like a project with @tidings/relays installed. */
async function projectDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tidings-cli-relay-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  await symlink(nodeModules, join(dir, 'node_modules'), 'dir');
  return dir;
}

interface LogLine {
  readonly level: number;
  readonly time: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

/** Every non-empty line must be a JSON object with pino's level, time and msg. */
function parseLogLines(text: string): LogLine[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        throw new Error(`not a JSON log line: ${line}`);
      }
      expect(parsed, line).toEqual(expect.objectContaining({ level: expect.any(Number), time: expect.any(Number), msg: expect.any(String) }));
      return parsed as LogLine;
    });
}

/** Fresh schema, exchange + bound queue, Kafka topic and consumers on both, all removed after the test. */
async function world(label: string, kafkaClient: Record<string, unknown> = {}) {
  const id = randomBytes(4).toString('hex');
  const schema = `t_cli_relay_${label}_${id}`;
  const dir = await projectDir();

  const pool = new pg.Pool({ connectionString: services.postgres, max: 4 });
  pool.on('error', () => {});
  cleanups.push(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await pool.end();
  });

  // RabbitMQ: an exchange of this test, a queue bound to the topics the rabbit relay sends.
  const rabbitTopic = `cli_${id}.orders.created`;
  const exchange = `tidings.cli-relay.${id}`;
  const queue = `tidings.cli-relay.${id}.orders`;
  const connection = await amqp.connect(services.rabbitmq);
  connection.on('error', () => {});
  const channel = await connection.createChannel();
  cleanups.push(async () => {
    await channel.deleteQueue(queue).catch(() => {});
    await channel.deleteExchange(exchange).catch(() => {});
    await connection.close().catch(() => {});
  });
  await channel.assertExchange(exchange, 'topic', { durable: true });
  await channel.assertQueue(queue, { durable: true });
  await channel.bindQueue(queue, exchange, `cli_${id}.orders.#`);
  const rabbitArrivals: { event_id: string; key: string | null; routingKey: string; type: string | undefined }[] = [];
  await channel.consume(
    queue,
    (message) => {
      if (!message) return;
      const key = message.properties.headers?.[amqpHeaders.key];
      rabbitArrivals.push({ event_id: String(message.properties.messageId), key: typeof key === 'string' ? key : null, routingKey: message.fields.routingKey, type: message.properties.type });
    },
    { noAck: true },
  );

  // Kafka: a topic of this test (the relay's Kafka topic is the event's topic), read from the beginning.
  const kafkaTopic = `cli-relay.${id}`;
  const kafka = new kafkajs.Kafka({ brokers: [services.kafka], clientId: 'cli-relay-test', logLevel: kafkajs.logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  cleanups.push(async () => {
    await admin.deleteTopics({ topics: [kafkaTopic] }).catch(() => {});
    await admin.disconnect();
  });
  await admin.createTopics({ topics: [{ topic: kafkaTopic, numPartitions: 3 }], waitForLeaders: true });
  const kafkaArrivals: { event_id: string; key: string | null; partition: number; ce_id: string; ce_source: string }[] = [];
  const consumer = kafka.consumer({ groupId: `cli-relay-test-${id}`, maxWaitTimeInMs: 100 });
  await consumer.connect();
  cleanups.push(async () => {
    await consumer.disconnect();
    await admin.deleteGroups([`cli-relay-test-${id}`]).catch(() => {});
  });
  await consumer.subscribe({ topics: [kafkaTopic], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      const eventId = message.headers?.[kafkaHeaders.eventId];
      const ce = (name: string) => String(message.headers?.[`ce_${name}`]);
      kafkaArrivals.push({ event_id: String(eventId), key: message.key === null ? null : message.key.toString(), partition, ce_id: ce('id'), ce_source: ce('source') });
    },
  });

  const relays = [
    { name: `orders-to-rabbit-${id}`, topics: [`cli_${id}.orders.*`], pollIntervalMs: 200, transport: { type: 'rabbitmq', url: services.rabbitmq, exchange } },
    {
      name: `orders-to-kafka-${id}`,
      topics: [kafkaTopic],
      pollIntervalMs: 200,
      onFailure: 'block',
      retry: { retries: 20, maxDelayMs: 1_000 },
      transport: { type: 'kafka', brokers: [services.kafka], client: kafkaClient, cloudEvents: { source: '/cli-relay' } },
    },
  ] as const;
  return { id, schema, dir, pool, rabbitTopic, queue, kafkaTopic, rabbitArrivals, kafkaArrivals, relays };
}

type World = Awaited<ReturnType<typeof world>>;

/**
 * Business transactions, one after another; each writes one event to each relay's topic with the
 * same key. `rollBack` names the transactions that roll back. Returns the committed events and the
 * ids of the rolled-back ones.
 */
async function writeTransactions(w: World, first: number, count: number, rollBack: ReadonlySet<number>) {
  const committed: OutboxEvent[] = [];
  const rolledBack: string[] = [];
  for (let t = first; t < first + count; t++) {
    const key = `customer-${t % 4}`;
    const input = [
      { topic: w.rabbitTopic, key, payload: { t, to: 'rabbit' } },
      { topic: w.kafkaTopic, key, payload: { t, to: 'kafka' } },
    ];
    if (rollBack.has(t)) {
      await inTransaction(w.pool, async (client) => {
        rolledBack.push(...(await publish(client, input, { schema: w.schema })).map((e) => e.eventId));
        throw new Error('rolled back on purpose');
      }).catch((error: Error) => {
        if (error.message !== 'rolled back on purpose') throw error;
      });
    } else {
      committed.push(...(await inTransaction(w.pool, (client) => publish(client, input, { schema: w.schema }))));
    }
  }
  return { committed, rolledBack };
}

/**
 * Migrates with `tidings migrate`, runs `tidings relay --config file`, checks what both brokers
 * received, then stops it with SIGTERM. Returns its log lines.
 */
async function relayThroughBothBrokers(w: World, config: string, env: Record<string, string> = {}): Promise<LogLine[]> {
  const migrated = await runTidings(['migrate', '--database', services.postgres, '--schema', w.schema, '--partitions', '4'], { cwd: w.dir, env: info, timeoutMs: 60_000 });
  expect(migrated.code, migrated.stderr).toBe(0);
  expect(migrated.stdout).toMatch(/outbox: applied 0001_outbox\.sql/);

  // A backlog written before the relay runs: the relays start from the beginning of the log.
  const backlog = await writeTransactions(w, 0, 4, new Set([2]));

  const relay = spawnTidings(['relay', '--config', config], w.dir, env);
  const running = waitUntil('tidings relay logs that it is running', async () => /tidings relay running/.test(relay.stdout()), 30_000);
  const exitedEarly = relay.exited.then(({ code, signal }) => {
    throw new Error(`tidings relay exited early (${JSON.stringify({ code, signal })}):\n${relay.stderr()}\n${relay.stdout()}`);
  });
  await Promise.race([running, exitedEarly]);

  const live = await writeTransactions(w, 4, 16, new Set([9, 15]));
  const committed = await inCommitOrder(toExecutor(w.pool), w.schema, [...backlog.committed, ...live.committed]);
  const rolledBack = [...backlog.rolledBack, ...live.rolledBack];
  expect(rolledBack).toHaveLength(6);
  const toRabbit = committed.filter((e) => e.topic === w.rabbitTopic);
  const toKafka = committed.filter((e) => e.topic === w.kafkaTopic);
  expect(toRabbit).toHaveLength(17);
  expect(toKafka).toHaveLength(17);

  const arrivedAll = (arrivals: readonly { event_id: string }[], expected: readonly OutboxEvent[]) => async () => {
    const ids = new Set(arrivals.map((a) => a.event_id));
    return expected.every((e) => ids.has(e.eventId));
  };
  await Promise.race([
    Promise.all([
      waitUntil(`all ${toRabbit.length} committed events arrived in RabbitMQ queue ${w.queue}`, arrivedAll(w.rabbitArrivals, toRabbit), 60_000),
      waitUntil(`all ${toKafka.length} committed events arrived in Kafka topic ${w.kafkaTopic}`, arrivedAll(w.kafkaArrivals, toKafka), 60_000),
    ]),
    exitedEarly,
  ]);

  // Nothing lost, nothing that was not committed (the rolled-back events above all), no copies, per key in commit order.
  expect(judge(toRabbit, w.rabbitArrivals)).toEqual({ lost: [], unexpected: [], duplicated: {}, outOfOrder: [] });
  expect(judge(toKafka, w.kafkaArrivals)).toEqual({ lost: [], unexpected: [], duplicated: {}, outOfOrder: [] });
  const arrivedIds = new Set([...w.rabbitArrivals, ...w.kafkaArrivals].map((a) => a.event_id));
  expect(rolledBack.filter((id) => arrivedIds.has(id))).toEqual([]);
  // Each relay sent only its own topic, routed by topic; every key stays in one Kafka partition.
  expect(w.rabbitArrivals.every((a) => a.routingKey === w.rabbitTopic && a.type === w.rabbitTopic)).toBe(true);
  const partitionsByKey = new Map<string, Set<number>>();
  for (const a of w.kafkaArrivals) partitionsByKey.set(a.key!, (partitionsByKey.get(a.key!) ?? new Set()).add(a.partition));
  expect([...partitionsByKey.keys()].sort()).toEqual(['customer-0', 'customer-1', 'customer-2', 'customer-3']);
  for (const [key, partitions] of partitionsByKey) expect(partitions.size, key).toBe(1);
  // The config's cloudEvents option reached the Kafka transport: every record is also a CloudEvent.
  expect(w.kafkaArrivals.filter((a) => a.ce_id !== a.event_id || a.ce_source !== '/cli-relay')).toEqual([]);

  // SIGTERM: a graceful stop and exit 0, promptly.
  const signalledAt = Date.now();
  expect(relay.child.kill('SIGTERM')).toBe(true);
  const exit = await within(relay.exited, 20_000, 'tidings relay to exit after SIGTERM');
  const stopMs = Date.now() - signalledAt;
  expect({ code: exit.code, signal: exit.signal }, relay.stderr()).toEqual({ code: 0, signal: null });
  expect(stopMs).toBeLessThan(5_000);

  // JSON log lines, one object per line, telling what ran and how it stopped. Nothing else: even
  // kafkajs's own lines (e.g. "The coordinator is loading" from a fresh broker) are JSON on stdout.
  expect(relay.stderr()).toBe('');
  const logs = parseLogLines(relay.stdout());
  const [rabbit, kafka] = w.relays;
  expect(logs).toContainEqual(expect.objectContaining({ msg: 'relay started', relay: rabbit.name, transport: 'rabbitmq' }));
  expect(logs).toContainEqual(expect.objectContaining({ msg: 'relay started', relay: kafka.name, transport: 'kafka' }));
  expect(logs).toContainEqual(expect.objectContaining({ msg: expect.stringMatching(/^tidings relay running/), config }));
  expect(logs).toContainEqual(expect.objectContaining({ msg: 'stopping: finishing the batches in flight', signal: 'SIGTERM' }));
  // The command's own last word (a kafkajs debug line about a closing socket may still follow it).
  expect(logs.filter((line) => !('kafkajs' in line)).at(-1)?.msg).toBe('stopped');
  expect(logs.filter((line) => line.msg === 'dead letter')).toEqual([]);

  // A graceful stop, as `tidings status` sees it: both relays caught up (their cursors were saved
  // before the exit), no dead letters, no worker left registered, no partition leased.
  const report = await runTidings(['status', '--json', '--database', services.postgres, '--schema', w.schema], { cwd: w.dir, env: info, timeoutMs: 60_000 });
  expect(report.code, report.stderr).toBe(0);
  const { relays } = JSON.parse(report.stdout) as {
    relays: { relay: string; lagEvents: number; deadLetters: number; stalled: boolean; workers: unknown[]; partitions: { owner: string | null }[] }[];
  };
  expect(relays.map((r) => ({ ...r, partitions: r.partitions.map((p) => p.owner) }))).toEqual(
    [kafka.name, rabbit.name].sort().map((relay) =>
      expect.objectContaining({ relay, lagEvents: 0, deadLetters: 0, stalled: false, workers: [], partitions: [null, null, null, null] }),
    ),
  );
  return logs;
}

describe('tidings relay --config', () => {
  it('runs a RabbitMQ relay and a Kafka relay from a .json config, delivering only committed events, and stops on SIGTERM', { timeout: 150_000 }, async () => {
    const w = await world('json');
    const config = join(w.dir, 'tidings.config.json');
    await writeFile(config, JSON.stringify({ database: services.postgres, schema: w.schema, relays: w.relays }, null, 2));
    await relayThroughBothBrokers(w, config);
  });

  it('runs the same relays from a tidings.config.ts that imports defineConfig from @tidings/relays, kafkajs logging into the JSON log', { timeout: 150_000 }, async () => {
    const w = await world('ts', { logLevel: 'debug' });
    const config = join(w.dir, 'tidings.config.ts');
    await writeFile(
      config,
      [
        `import { defineConfig, type TidingsConfig } from '@tidings/relays';`,
        ``,
        `const relays: TidingsConfig['relays'] = ${JSON.stringify(w.relays, null, 2)};`,
        ``,
        `export default defineConfig({`,
        `  database: ${JSON.stringify(services.postgres)},`,
        `  schema: ${JSON.stringify(w.schema)},`,
        `  relays,`,
        `});`,
        ``,
      ].join('\n'),
    );
    const logs = await relayThroughBothBrokers(w, config, { TIDINGS_LOG_LEVEL: 'debug' });
    const [rabbit, kafka] = w.relays;
    // TIDINGS_LOG_LEVEL=debug shows each delivery; the Kafka client's debug lines come as JSON too, tagged with the relay.
    expect(logs).toContainEqual(expect.objectContaining({ msg: 'delivered', relay: rabbit.name, level: 20 }));
    expect(logs).toContainEqual(expect.objectContaining({ msg: 'delivered', relay: kafka.name, level: 20 }));
    expect(logs).toContainEqual(expect.objectContaining({ relay: kafka.name, kafkajs: expect.any(String), level: 20 }));
  });

  it('refuses a relay without a name (.json) or with an unknown transport (.ts): exit 2, one line, no stack trace', async () => {
    const dir = await projectDir();
    const json = join(dir, 'no-name.json');
    await writeFile(json, JSON.stringify({ database: services.postgres, relays: [{ transport: { type: 'rabbitmq', url: services.rabbitmq } }] }));
    const ts = join(dir, 'pigeon.config.ts');
    await writeFile(
      ts,
      `import { defineConfig } from '@tidings/relays';\nexport default defineConfig({ database: ${JSON.stringify(services.postgres)}, relays: [{ name: 'p', transport: { type: 'carrier-pigeon' } as never }] });\n`,
    );
    const cases: [string, string][] = [
      [json, `tidings relay: config ${json}: relays[0].name must be a non-empty string, got nothing`],
      [ts, `tidings relay: config ${ts}: relays[0].transport.type must be "rabbitmq" or "kafka", got "carrier-pigeon"`],
    ];
    for (const [file, message] of cases) {
      const run = await runTidings(['relay', '--config', file], { cwd: dir, env: info, timeoutMs: 60_000 });
      expect(run, file).toEqual({ code: 2, signal: null, stdout: '', stderr: `${message}\n` });
    }
  });
});
