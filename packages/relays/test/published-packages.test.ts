import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, rm, mkdtemp, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '@tidings/relays/testing';
import { runTidings, startTidings, type CliOptions } from '../../../test/support/cli.ts';
import { services } from '../../../test/support/env.ts';

/*
 * The packages as an application gets them: `npm pack` of each workspace package (its `prepack`
 * builds dist), the tarballs installed into a project outside the workspace with only what that
 * application would add (pg; then amqplib and pino), and run there by plain Node, with no
 * `tidings-source` condition and no workspace node_modules to fall back on.
 */

const root = fileURLToPath(new URL('../../../', import.meta.url));
const run = promisify(execFile);
const suffix = randomBytes(4).toString('hex');
const schema = `t_packages_${suffix}`;
const packages = ['outbox', 'inbox', 'relays'] as const;
const entryPoints = [
  '@tidings/outbox',
  '@tidings/inbox',
  '@tidings/relays',
  '@tidings/relays/webhook',
  '@tidings/relays/sse',
  '@tidings/relays/polling',
  '@tidings/relays/rabbitmq',
  '@tidings/relays/kafka',
  '@tidings/relays/websocket',
  '@tidings/relays/dashboard',
];
let scratch: string;

/** npm as the application runs it: none of the variables `npm test` sets for this workspace. */
function npmEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of Object.keys(env)) {
    if (/^(npm_package_|npm_lifecycle_|npm_config_local_prefix$|npm_config_workspace|INIT_CWD$)/i.test(name)) delete env[name];
  }
  return env;
}

async function npm(args: readonly string[], cwd: string): Promise<string> {
  try {
    const { stdout } = await run('npm', [...args], { cwd, env: npmEnv(), maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`npm ${args.join(' ')} failed in ${cwd}:\n${stderr ?? ''}\n${stdout ?? ''}`, { cause: error });
  }
}

/** Runs a script of the scratch project with plain Node and returns what it printed last, as JSON. */
async function node(script: string, env: Record<string, string> = {}): Promise<Record<string, unknown>> {
  try {
    const { stdout } = await run(process.execPath, [script], { cwd: scratch, env: { ...process.env, ...env }, timeout: 60_000 });
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`node ${script} failed:\n${stderr ?? ''}\n${stdout ?? ''}`, { cause: error });
  }
}

/** `name@range` as the workspace's `folder`/package.json gives it, so npm finds it in the cache `npm ci` filled. */
async function version(folder: string, field: 'dependencies' | 'devDependencies' | 'peerDependencies', name: string): Promise<string> {
  const manifest = JSON.parse(await readFile(join(root, folder, 'package.json'), 'utf8')) as Record<string, Record<string, string>>;
  return `${name}@${manifest[field]![name]!}`;
}

let adding: Promise<string> | undefined;

/** What an application that relays to RabbitMQ with the tidings command adds: amqplib and pino (once per run). */
async function addClients(): Promise<void> {
  const clients = [await version('packages/relays', 'peerDependencies', 'amqplib'), await version('packages/relays', 'peerDependencies', 'pino')];
  await (adding ??= npm(['install', '--prefer-offline', '--no-audit', '--no-fund', ...clients], scratch));
}

const cli = (args: string[], options: CliOptions = {}) =>
  runTidings(args, { cwd: scratch, script: join(scratch, 'node_modules', '@tidings', 'relays', 'bin', 'tidings.js'), timeoutMs: 60_000, ...options });

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'tidings-packages-'));
  expect(scratch.startsWith(root), `the scratch project ${scratch} must lie outside the workspace ${root}`).toBe(false);
  const tarballs = join(scratch, 'tarballs');
  await mkdir(tarballs);
  const packed = JSON.parse(await npm(['pack', '--json', '--pack-destination', tarballs, ...packages.flatMap((name) => ['-w', `packages/${name}`])], root)) as {
    filename: string;
    files: { path: string }[];
  }[];
  expect(packed.map((tarball) => tarball.filename).sort()).toEqual(packages.map((name) => `tidings-${name}-0.1.0.tgz`).sort());
  for (const tarball of packed) {
    const paths = tarball.files.map((file) => file.path);
    expect(paths, `${tarball.filename} carries its README and the license`).toEqual(expect.arrayContaining(['README.md', 'LICENSE', 'package.json']));
    expect(paths.filter((path) => /^(test|mutants)\//.test(path) || path.endsWith('.tsbuildinfo')), `${tarball.filename} ships no tests, mutants or build state`).toEqual([]);
  }
  await writeFile(join(scratch, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module' }));
  await npm(
    [
      'install',
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      ...packed.map((tarball) => join(tarballs, tarball.filename)),
      await version('packages/outbox', 'dependencies', 'pg'),
      await version('.', 'devDependencies', '@types/node'),
    ],
    scratch,
  );
  for (const [name, text] of Object.entries(scripts)) await writeFile(join(scratch, name), text);
}, 180_000);

afterAll(async () => {
  const client = new pg.Client({ connectionString: services.postgres });
  await client.connect();
  await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await client.end();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

// The tests run in order on one scratch project: the later ones install amqplib and pino, which
// the first ones check are missing.
describe('the published packages, installed into a project of their own', () => {
  it('resolve every entry point as ES modules without any broker client, and refuse a transport whose client is missing by naming the package', async () => {
    const report = await node('without-clients.mjs');
    expect(report.installed).toEqual({ amqplib: false, kafkajs: false, ws: false });
    const exports = report.entries as Record<string, string[]>;
    expect(Object.keys(exports)).toEqual(entryPoints);
    expect(exports['@tidings/outbox']).toEqual(expect.arrayContaining(['publish', 'createRelay', 'migrate', 'pgDatabase']));
    expect(exports['@tidings/inbox']).toEqual(expect.arrayContaining(['inbox', 'migrateInbox']));
    expect(exports['@tidings/relays']).toEqual(expect.arrayContaining(['MissingPackageError', 'defineConfig', 'runCli']));
    expect(exports['@tidings/relays/webhook']).toEqual(expect.arrayContaining(['webhookReceiver', 'startWebhookDispatcher']));
    expect(exports['@tidings/relays/sse']).toContain('sseFeed');
    expect(exports['@tidings/relays/polling']).toContain('pollingFeed');
    expect(exports['@tidings/relays/rabbitmq']).toEqual(expect.arrayContaining(['rabbitmqTransport', 'consumeRabbitmq']));
    expect(exports['@tidings/relays/kafka']).toEqual(expect.arrayContaining(['kafkaTransport', 'consumeKafka']));
    expect(exports['@tidings/relays/websocket']).toEqual(expect.arrayContaining(['websocketFeed', 'websocketConsumer']));
    expect(exports['@tidings/relays/dashboard']).toEqual(['dashboard']);
    const missing = (feature: string, name: string) => ({
      name: 'MissingPackageError',
      missingPackage: true,
      packages: [name],
      message: `${feature} needs the package ${name}: npm install ${name}`,
    });
    expect(report.refusals).toEqual({
      rabbitmqTransport: missing('RabbitMQ (rabbitmqTransport, consumeRabbitmq)', 'amqplib'),
      consumeRabbitmq: missing('RabbitMQ (rabbitmqTransport, consumeRabbitmq)', 'amqplib'),
      kafkaTransport: missing('Kafka (kafkaTransport, consumeKafka, createKafkaClient)', 'kafkajs'),
      websocketFeed: missing('the WebSocket feed (websocketFeed, websocketConsumer)', 'ws'),
      websocketConsumer: missing('the WebSocket feed (websocketFeed, websocketConsumer)', 'ws'),
    });
  }, 120_000);

  it('type-check against their declarations through the exports map', async () => {
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const checked = await run(process.execPath, [tsc, '-p', join(scratch, 'tsconfig.json')], { cwd: scratch }).then(
      () => 'clean',
      (error: { stdout?: string }) => error.stdout ?? String(error),
    );
    expect(checked).toBe('clean');
  }, 120_000);

  it('run the tidings command, which names the package a missing feature needs', async () => {
    const embedded = await cli(['migrate']);
    expect(embedded.code).toBe(1);
    expect(embedded.stderr).toBe(
      'tidings migrate: the embedded database (used without --database, a config "database" or DATABASE_URL) needs the package @electric-sql/pglite: npm install @electric-sql/pglite\n',
    );
    const migrated = await cli(['migrate', '--schema', schema], { env: { DATABASE_URL: services.postgres } });
    expect(migrated.code, migrated.stderr).toBe(0);
    const relay = await cli(['relay', '--config', 'kafka.config.mjs', '--schema', schema], { env: { DATABASE_URL: services.postgres } });
    expect(relay.code).toBe(1);
    expect(relay.stderr).toBe('tidings relay: the log of tidings relay needs the package pino: npm install pino\n');
  }, 120_000);

  it('publish, relay through RabbitMQ and apply through the inbox once amqplib is installed, loading it only when RabbitMQ is used', async () => {
    await addClients();
    const report = await node('roundtrip.mjs', {
      DATABASE_URL: services.postgres,
      RABBITMQ_URL: services.rabbitmq,
      SCHEMA: schema,
      EXCHANGE: `tidings.packages.${suffix}`,
      QUEUE: `tidings.packages.${suffix}`,
    });
    expect(report.loadedBeforeUse).toEqual([]);
    expect(report.loadedAfterUse).toEqual(['amqplib']);
    const committed = report.committed as string[];
    expect(committed).toHaveLength(3);
    expect(report.applied).toEqual([...committed].sort());
    expect(report.applied).not.toContain(report.rolledBack);

    const relay = await cli(['relay', '--config', 'kafka.config.mjs', '--schema', schema], { env: { DATABASE_URL: services.postgres } });
    expect(relay.code).toBe(1);
    expect(relay.stderr).toContain('tidings relay: Kafka (kafkaTransport, consumeKafka, createKafkaClient) needs the package kafkajs: npm install kafkajs');
    expect(relay.stderr).not.toMatch(/\n\s+at |ERR_MODULE_NOT_FOUND|MODULE_NOT_FOUND/);
  }, 120_000);

  it('log JSON lines from tidings relay on a terminal when pino-pretty is not installed', async () => {
    await addClients();
    const migrated = await cli(['migrate', '--schema', schema], { env: { DATABASE_URL: services.postgres } });
    expect(migrated.code, migrated.stderr).toBe(0);
    const relay = startTidings(['relay', '--config', 'webhooks.config.mjs', '--schema', schema], {
      cwd: scratch,
      script: join(scratch, 'on-a-terminal.mjs'),
      env: { DATABASE_URL: services.postgres, TIDINGS_SECRET_KEY: randomBytes(32).toString('base64') },
    });
    try {
      await waitUntil('tidings relay running', () => relay.stdout().includes('tidings relay running') || relay.child.exitCode !== null, 30_000);
      relay.signal('SIGTERM');
      const ended = await relay.exited;
      expect(ended.code, ended.stderr).toBe(0);
      const lines = ended.stdout.trim().split('\n');
      expect(lines.map((line) => (JSON.parse(line) as { msg: string }).msg)).toEqual(expect.arrayContaining(['tidings relay running; SIGINT or SIGTERM stops it', 'stopped']));
    } finally {
      await relay.kill();
    }
  }, 120_000);

  it('serve the dashboard script and stylesheet from the installed package', async () => {
    const served = await node('dashboard-assets.mjs');
    expect(served).toEqual({ script: { status: 200, hasEventSource: true }, style: { status: 200, type: 'text/css; charset=utf-8' } });
  });

  it('name both exporter packages when tidings relay is asked for a metrics endpoint without them', async () => {
    await addClients();
    const env = { DATABASE_URL: services.postgres, TIDINGS_SECRET_KEY: randomBytes(32).toString('base64') };
    const migrated = await cli(['migrate', '--schema', schema], { env });
    expect(migrated.code, migrated.stderr).toBe(0);
    const relay = await cli(['relay', '--config', 'webhooks.config.mjs', '--schema', schema, '--metrics-port', '9464'], { env });
    expect(relay.code).toBe(1);
    expect(relay.stderr).toBe(
      'tidings relay: the metrics endpoint of tidings relay (--metrics-port, metricsPort) needs the packages @opentelemetry/exporter-prometheus and @opentelemetry/sdk-metrics: ' +
        'npm install @opentelemetry/exporter-prometheus @opentelemetry/sdk-metrics\n',
    );
  }, 120_000);
});

/** The scratch project's files besides package.json. */
const scripts: Record<string, string> = {
  'without-clients.mjs': `
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const resolvable = (name) => { try { require.resolve(name); return true; } catch { return false; } };
const entries = {};
for (const entry of ${JSON.stringify(entryPoints)}) entries[entry] = Object.keys(await import(entry));
const { MissingPackageError } = await import('@tidings/relays');
const { rabbitmqTransport, consumeRabbitmq } = await import('@tidings/relays/rabbitmq');
const { kafkaTransport } = await import('@tidings/relays/kafka');
const { websocketFeed, websocketConsumer } = await import('@tidings/relays/websocket');
const uses = {
  rabbitmqTransport: () => rabbitmqTransport({ url: 'amqp://127.0.0.1:5672' }),
  consumeRabbitmq: () => consumeRabbitmq({ url: 'amqp://127.0.0.1:5672', queue: 'q', consumer: 'c', database: {}, handler: () => {} }),
  kafkaTransport: () => kafkaTransport({ brokers: '127.0.0.1:9092' }),
  websocketFeed: () => websocketFeed({ database: {} }),
  websocketConsumer: () => websocketConsumer({ url: 'ws://127.0.0.1:1/ws', consumer: 'c', database: {}, handler: () => {} }),
};
const refusals = {};
for (const [name, use] of Object.entries(uses)) {
  try {
    await use();
    refusals[name] = 'made without its client';
  } catch (error) {
    refusals[name] = { name: error.name, missingPackage: error instanceof MissingPackageError, packages: error.packages, message: error.message };
  }
}
console.log(JSON.stringify({ installed: { amqplib: resolvable('amqplib'), kafkajs: resolvable('kafkajs'), ws: resolvable('ws') }, entries, refusals }));
`,
  'dashboard-assets.mjs': `
import { dashboard } from '@tidings/relays/dashboard';
import { createServer } from 'node:http';
const board = dashboard({ database: { query: async () => ({ rows: [], rowCount: 0 }) }, token: 'a-token-of-16-characters' });
const server = createServer((req, res) => void board(req, res)).listen(0, '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));
const get = (name) => fetch('http://127.0.0.1:' + server.address().port + '/' + name, { headers: { authorization: 'Bearer a-token-of-16-characters' } });
const script = await get('dashboard.js');
const style = await get('dashboard.css');
console.log(JSON.stringify({
  script: { status: script.status, hasEventSource: (await script.text()).includes('EventSource') },
  style: { status: style.status, type: style.headers.get('content-type') },
}));
server.close();
`,
  'roundtrip.mjs': `
import { createRequire } from 'node:module';
import pg from 'pg';
import { createRelay, migrate, pgDatabase, publish } from '@tidings/outbox';
import { migrateInbox } from '@tidings/inbox';
import '@tidings/relays';
import '@tidings/relays/webhook';
import '@tidings/relays/sse';
import '@tidings/relays/polling';
import '@tidings/relays/kafka';
import { consumeRabbitmq, rabbitmqTransport } from '@tidings/relays/rabbitmq';

const require = createRequire(import.meta.url);
const clientsLoaded = () => [...new Set(Object.keys(require.cache).flatMap((file) => file.match(/node_modules[\\\\/](amqplib|kafkajs)[\\\\/]/)?.[1] ?? []))];
const loadedBeforeUse = clientsLoaded();
const { DATABASE_URL: url, RABBITMQ_URL: amqpUrl, SCHEMA: schema, EXCHANGE: exchange, QUEUE: queue } = process.env;

const db = pgDatabase(url);
await migrate(db, { schema });
await migrateInbox(db, { schema });
const pool = new pg.Pool({ connectionString: url });
await pool.query(\`CREATE TABLE "\${schema}".applied (event_id text NOT NULL)\`);

async function transaction(commit, work) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query(commit ? 'COMMIT' : 'ROLLBACK');
    return result;
  } finally {
    client.release();
  }
}
const committed = [];
for (const id of ['o1', 'o2', 'o3']) {
  const [event] = await transaction(true, (client) => publish(client, { topic: 'orders.created', key: id, payload: { id } }, { schema }));
  committed.push(event.eventId);
}
const [rolledBack] = await transaction(false, (client) => publish(client, { topic: 'orders.created', key: 'o4', payload: { id: 'o4' } }, { schema }));

const consumer = await consumeRabbitmq({
  url: amqpUrl, queue, exchange, bindings: ['orders.*'], deadLetterQueue: false,
  consumer: 'scratch', database: pool, schema,
  handler: (client, event) => client.query(\`INSERT INTO "\${schema}".applied VALUES ($1)\`, [event.eventId]),
});
const relay = createRelay({ name: 'packages', database: db, schema, transport: rabbitmqTransport({ url: amqpUrl, exchange }) });
const loadedAfterUse = clientsLoaded();
await relay.start();
const deadline = Date.now() + 45_000;
let applied = [];
while (applied.length < committed.length && Date.now() < deadline) {
  await new Promise((resolve) => setTimeout(resolve, 100));
  applied = (await pool.query(\`SELECT event_id FROM "\${schema}".applied ORDER BY event_id\`)).rows.map((row) => row.event_id);
}
await relay.stop();
await consumer.close();
const amqp = require('amqplib');
const connection = await amqp.connect(amqpUrl);
const channel = await connection.createChannel();
await channel.deleteQueue(queue);
await channel.deleteExchange(exchange);
await connection.close();
await pool.end();
await db.close();
console.log(JSON.stringify({ loadedBeforeUse, loadedAfterUse, committed, rolledBack: rolledBack.eventId, applied }));
`,
  'on-a-terminal.mjs': `
process.stdout.isTTY = true;
const { runCli } = await import('@tidings/relays');
process.exitCode = await runCli(process.argv.slice(2));
`,
  'webhooks.config.mjs': 'export default { webhooks: true };\n',
  'kafka.config.mjs': `export default { relays: [{ name: 'to-kafka', transport: { type: 'kafka', brokers: '127.0.0.1:9' } }] };\n`,
  'entry-points.ts': `
import { publish, type Transport } from '@tidings/outbox';
import { inbox } from '@tidings/inbox';
import { defineConfig, MissingPackageError } from '@tidings/relays';
import { webhookReceiver } from '@tidings/relays/webhook';
import { sseFeed } from '@tidings/relays/sse';
import { pollingFeed } from '@tidings/relays/polling';
import { rabbitmqTransport } from '@tidings/relays/rabbitmq';
import { kafkaTransport } from '@tidings/relays/kafka';
import { websocketFeed } from '@tidings/relays/websocket';
import { memoryTransport } from '@tidings/relays/testing';

export const transports: Transport[] = [rabbitmqTransport({ url: 'amqp://localhost' }), kafkaTransport({ brokers: 'localhost:9092' }), memoryTransport()];
export const used = [inbox, defineConfig, webhookReceiver, sseFeed, pollingFeed, websocketFeed];
export const missing = (error: unknown): readonly string[] => (error instanceof MissingPackageError ? error.packages : []);
// @ts-expect-error a number is not a transaction: the declarations are typed, not any
export const wrong = () => publish(42, { topic: 'orders.created', payload: {} });
`,
  'tsconfig.json': JSON.stringify({
    compilerOptions: { target: 'es2023', module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true, skipLibCheck: true, types: ['node'] },
    files: ['entry-points.ts'],
  }),
};
