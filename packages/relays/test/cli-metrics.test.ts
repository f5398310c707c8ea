import { publish } from '@tidings/outbox';
import { migrateWebhooks, webhookEndpoints } from '@tidings/relays/webhook';
import amqp from 'amqplib';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { testKeyring } from '../../../test/support/secret-key.ts';
import { loopbackOnly as loopback } from '@tidings/relays/testing';
import { services } from '../../../test/support/env.ts';
import { freePort } from '../../../test/support/private-postgres.ts';
import { shareBrokerPerTest } from '../../../test/support/rabbitmq-broker-lock.ts';
import { startTidings, type CliProcess } from '../../../test/support/cli.ts';

shareBrokerPerTest();

let outbox: TestOutbox;
let folder: string;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  outbox = await freshOutbox('cli_metrics', { partitions: 4 });
  folder = await mkdtemp(join(tmpdir(), 'tidings-metrics-'));
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});
afterAll(async () => {
  await outbox?.close();
  await rm(folder, { recursive: true, force: true });
});

function tidings(args: string[]): CliProcess {
  const run = startTidings(args, { cwd: folder, env: { TIDINGS_LOG_LEVEL: 'info' } });
  cleanups.push(() => run.kill());
  return run;
}

async function config(name: string, content: object): Promise<string> {
  const file = join(folder, `${name}.json`);
  await writeFile(file, JSON.stringify(content));
  return file;
}

/** The value of the series of `metric` whose labels include each of `labels`; undefined when absent. */
function sample(text: string, metric: string, labels: Readonly<Record<string, string>>): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
    if (!match || match[1] !== metric) continue;
    if (Object.entries(labels).every(([k, v]) => match[2]!.includes(`${k}="${v}"`))) return Number(match[3]);
  }
  return undefined;
}

describe('tidings relay --metrics-port', () => {
  it('serves Prometheus text on metricsHost:metricsPort whose delivered counter equals what the destination received, with lag gauges per partition', async () => {
    const id = randomBytes(4).toString('hex');
    const topic = `metrics_${id}.orders.created`;
    const exchange = `tidings.cli-metrics.${id}`;
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
    const arrived = new Set<string>();
    await channel.consume(queue, (message) => void (message && arrived.add(String(message.properties.messageId))), { noAck: true });

    for (let t = 0; t < 4; t++) {
      await inTransaction(outbox.pool, (client) => publish(client, [0, 1, 2].map((i) => ({ topic, key: `k${(t + i) % 5}`, payload: { t, i } })), { schema: outbox.schema }));
    }
    const relay = `to-rabbit-${id}`;
    const port = await freePort();
    const file = await config(`ok-${id}`, {
      relays: [{ name: relay, topics: [topic], pollIntervalMs: 100, transport: { type: 'rabbitmq', url: services.rabbitmq, exchange } }],
      retention: false,
      metricsPort: port,
      metricsHost: '127.0.0.1',
    });
    const run = tidings(['relay', '--config', file, '--database', services.postgres, '--schema', outbox.schema]);

    await waitUntil('the 12 events arrived', async () => arrived.size === 12, 30_000).catch((error: Error) => {
      throw new Error(`${error.message}; relay stdout: ${run.stdout()} stderr: ${run.stderr()}`);
    });
    let text = '';
    await waitUntil('the endpoint reports 12 delivered', async () => {
      text = await fetch(`http://127.0.0.1:${port}/metrics`).then((response) => response.text(), () => '');
      return sample(text, 'tidings_relay_events_delivered_total', { relay }) === 12;
    }, 30_000);
    expect(run.stderr()).toBe('');
    expect(sample(text, 'tidings_relay_events_delivered_total', { relay, transport: 'rabbitmq' })).toBe(arrived.size);
    expect(sample(text, 'tidings_relay_commit_to_ack_duration_count', { relay })).toBe(12);
    for (const partition of ['0', '1', '2', '3']) {
      expect(sample(text, 'tidings_relay_lag_events', { relay, partition }), `partition ${partition}`).toBe(0);
      expect(sample(text, 'tidings_relay_lag_seconds', { relay, partition }), `partition ${partition}`).toBe(0);
    }
    expect(sample(text, 'tidings_relay_stalled', { relay })).toBe(0);
    expect(sample(text, 'tidings_relay_dead_letters', { relay })).toBe(0);
    expect(text).toMatch(/^tidings_watermark_lag_seconds(\{[^}]*\})? 0$/m);
    expect(text).toMatch(/^tidings_webhook_endpoints_disabled(\{[^}]*\})? 0$/m);
  });

  it('refuses a port that is not a port number, on the command line and in the config, before starting anything', async () => {
    const flag = tidings(['relay', '--metrics-port', '70000', '--database', services.postgres, '--schema', outbox.schema]);
    expect((await flag.exited).code).toBe(2);
    expect(flag.stderr()).toContain('--metrics-port takes a port number from 1 to 65535, got "70000"');

    const file = await config('bad-port', { relays: [], metricsPort: '9464' });
    const inFile = tidings(['relay', '--config', file, '--database', services.postgres, '--schema', outbox.schema]);
    expect((await inFile.exited).code).toBe(2);
    expect(inFile.stderr()).toContain('metricsPort must be a whole number from 1 to 65535, got "9464"');
  });

  it('exits with a clear error when the metrics port is taken', async () => {
    const taken: Server = createServer();
    await new Promise<void>((resolve) => taken.listen(0, 'localhost', resolve));
    cleanups.push(() => new Promise((resolve) => taken.close(resolve)));
    const port = (taken.address() as { port: number }).port;
    const file = await config('taken', {
      relays: [{ name: 'unused', topics: ['unused'], transport: { type: 'rabbitmq', url: services.rabbitmq } }],
      retention: false,
      metricsPort: port,
    });
    const run = tidings(['relay', '--config', file, '--database', services.postgres, '--schema', outbox.schema]);
    expect((await run.exited).code).toBe(2);
    expect(run.stderr()).toContain(`the metrics endpoint cannot listen on localhost:${port}`);
  });

  it('counts the disabled webhook endpoints', async () => {
    await migrateWebhooks(outbox.db, { schema: outbox.schema });
    const endpoints = webhookEndpoints({ schema: outbox.schema, addressPolicy: loopback, keyring: testKeyring });
    const kept = await endpoints.create(outbox.db, { url: 'http://127.0.0.1:9/kept', topics: ['metrics.kept'] });
    const gone = await endpoints.create(outbox.db, { url: 'http://127.0.0.1:9/gone', topics: ['metrics.gone'] });
    await endpoints.disable(outbox.db, gone.id, 'the test disabled it');
    expect((await endpoints.get(outbox.db, kept.id))!.enabled).toBe(true);
    const port = await freePort();
    const file = await config('endpoints', {
      relays: [{ name: 'unused-too', topics: ['unused'], transport: { type: 'rabbitmq', url: services.rabbitmq } }],
      retention: false,
      metricsPort: port,
    });
    tidings(['relay', '--config', file, '--database', services.postgres, '--schema', outbox.schema]);
    await waitUntil('the endpoint reports one disabled endpoint', async () => {
      const text = await fetch(`http://localhost:${port}/metrics`).then((response) => response.text(), () => '');
      return /^tidings_webhook_endpoints_disabled(\{[^}]*\})? 1$/m.test(text);
    }, 30_000);
  });
});
