import { publish } from '@tidings/outbox';
import amqp from 'amqplib';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { runTidings, startTidings, type CliProcess } from '../../../test/support/cli.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';
import { shareBrokerPerTest } from '../../../test/support/rabbitmq-broker-lock.ts';

// The config file's `pool` sets up the PostgreSQL connections of `tidings relay`.

shareBrokerPerTest();

let outbox: TestOutbox;
let folder: string;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  outbox = await freshOutbox('cli_pool', { partitions: 8 });
  folder = await mkdtemp(join(tmpdir(), 'tidings-pool-'));
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});
afterAll(async () => {
  await outbox?.close();
  await rm(folder, { recursive: true, force: true });
});

async function config(name: string, content: object): Promise<string> {
  const file = join(folder, `${name}.json`);
  await writeFile(file, JSON.stringify(content));
  return file;
}

describe('tidings relay: the config file\'s pool', () => {
  it('holds six relays over eight partitions to its max of 2 pooled connections plus the one LISTEN, and delivers everything', async () => {
    const id = randomBytes(4).toString('hex');
    const topic = `pool_${id}.orders`;
    const exchange = `tidings.cli-pool.${id}`;
    const connection = await amqp.connect(services.rabbitmq);
    connection.on('error', () => {});
    const channel = await connection.createChannel();
    cleanups.push(async () => {
      await channel.deleteExchange(exchange).catch(() => {});
      await connection.close();
    });
    await channel.assertExchange(exchange, 'topic', { durable: true });
    const { queue } = await channel.assertQueue('', { exclusive: true });
    await channel.bindQueue(queue, exchange, '#');
    let arrived = 0;
    await channel.consume(queue, (message) => void (message && arrived++), { noAck: true });

    const app = `tidings_pool_${id}`;
    const url = new URL(services.postgres);
    url.searchParams.set('application_name', app);
    const relays = Array.from({ length: 6 }, (_, r) => ({ name: `pool-${id}-${r}`, topics: [topic], pollIntervalMs: 50, transport: { type: 'rabbitmq', url: services.rabbitmq, exchange } }));
    const file = await config(`pool-${id}`, { database: url.href, schema: outbox.schema, pool: { max: 2, keepAlive: true, connectTimeoutMs: 5_000, queryTimeoutMs: 5_000 }, relays, retention: false });
    const run: CliProcess = startTidings(['relay', '--config', file], { cwd: folder });
    cleanups.push(() => run.kill());

    const observer = new pg.Client({ connectionString: services.postgres });
    await observer.connect();
    cleanups.push(() => observer.end());
    let most = 0;
    const count = async (): Promise<number> => {
      const { rows } = await observer.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [app]);
      most = Math.max(most, rows[0]!.n);
      return rows[0]!.n;
    };
    await waitUntil('the relay process connected', async () => (await count()) > 0, 30_000).catch((error: Error) => {
      throw new Error(`${error.message}; relay stderr: ${run.stderr()}`);
    });
    // Events in every partition while the six relays read, write cursors and renew leases.
    for (let t = 0; t < 20; t++) {
      await inTransaction(outbox.pool, (client) => publish(client, Array.from({ length: 8 }, (_, i) => ({ topic, key: `k${t}-${i}`, payload: { t, i } })), { schema: outbox.schema }));
      await count();
    }
    await waitUntil('each of the six relays delivered the 160 events', async () => {
      await count();
      return arrived === 6 * 160;
    }, 60_000);
    expect(most).toBeGreaterThanOrEqual(2);
    expect(most).toBeLessThanOrEqual(3);
    expect(run.stderr()).toBe('');
  });

  it('refuses a pool it cannot use, naming the key and what to write, before connecting', async () => {
    const relays = [{ name: 'r', transport: { type: 'rabbitmq', url: services.rabbitmq } }];
    const cases: Array<[object, string]> = [
      [{ pool: { max: 0 }, database: services.postgres }, 'pool.max must be a whole number of at least 1, got 0'],
      [{ pool: { maxx: 4 }, database: services.postgres }, 'pool has an unknown key "maxx" (did you mean "max"?)'],
      [{ pool: { keepAlive: 'yes' }, database: services.postgres }, 'pool.keepAlive must be true or false, got "yes"'],
      [{ pool: { queryTimeoutMs: -1 }, database: services.postgres }, 'pool.queryTimeoutMs must be a whole number of at least 0, got -1'],
      [{ pool: [], database: services.postgres }, 'pool must be an object of pgDatabase options'],
      [{ pool: { max: 4 } }, 'the config file sets "pool", which is for PostgreSQL connections, but no database URL is given'],
    ];
    for (const [content, message] of cases) {
      const file = await config(`bad-pool-${randomBytes(3).toString('hex')}`, { ...content, relays });
      const run = await runTidings(['relay', '--config', file], { cwd: folder });
      expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 2, stderr: expect.stringContaining(message) });
    }
  });
});
