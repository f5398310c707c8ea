/**
 * A relay worker process for the property suite, with any transport, so runs can SIGKILL, SIGSTOP
 * and SIGCONT it. Configured through the environment:
 *
 * - DATABASE_URL, TIDINGS_SCHEMA, TIDINGS_RELAY, TIDINGS_WORKER: the outbox and this worker;
 * - TIDINGS_LEASE_MS, TIDINGS_HEARTBEAT_MS, TIDINGS_POLL_MS, TIDINGS_BATCH: relay timing;
 * - TIDINGS_TRANSPORT (`table`, `rabbitmq`, `kafka`, `webhook`) and TIDINGS_TRANSPORT_OPTIONS (JSON).
 *
 * Prints one JSON line per relay event that matters to a test (`started`, leases, dead letters,
 * errors) on stdout.
 */
import { createRelay, pgDatabase, type Transport } from '@tidings/outbox';
import pg from 'pg';

const env = process.env;
const say = (line: object): void => void process.stdout.write(`${JSON.stringify(line)}\n`);
const options = JSON.parse(env.TIDINGS_TRANSPORT_OPTIONS ?? '{}') as Record<string, unknown>;
const worker = env.TIDINGS_WORKER!;
const closers: (() => Promise<unknown>)[] = [];

async function buildTransport(kind: string): Promise<Transport> {
  switch (kind) {
    case 'table': {
      const { tableTransport } = await import('./table-transport.ts');
      const pool = new pg.Pool({ connectionString: String(options.url), max: 2, connectionTimeoutMillis: 2_000 });
      pool.on('error', () => {});
      closers.push(() => pool.end());
      return tableTransport(pool, String(options.schema), { worker });
    }
    case 'rabbitmq': {
      const { rabbitmqTransport } = await import('@tidings/relays/rabbitmq');
      return rabbitmqTransport({
        url: String(options.url),
        connectTimeoutMs: 2_000,
        heartbeatSeconds: 5,
        sendTimeoutMs: 5_000,
        reconnect: { minDelayMs: 50, maxDelayMs: 500 },
      });
    }
    case 'webhook': {
      const { webhookTransport } = await import('@tidings/relays/webhook');
      return webhookTransport({
        url: String(options.url),
        secrets: options.secrets as string[],
        addressPolicy: { allow: ['127.0.0.1/32', '::1/128'] },
        sendTimeoutMs: Number(options.timeoutMs ?? 1_000),
        connectTimeoutMs: 500,
      });
    }
    case 'kafka': {
      const { kafkaTransport } = await import('@tidings/relays/kafka');
      const net = await import('node:net');
      const proxyPort = Number(options.proxyPort);
      return kafkaTransport({
        brokers: String(options.brokers),
        sendTimeoutMs: 5_000,
        client: {
          clientId: `property-${worker}`,
          connectTimeoutMs: 1_000,
          requestTimeoutMs: 3_000,
          logLevel: 'nothing',
          // Every broker connection goes through the run's fault proxy (one broker: one address).
          socketFactory: ({ onConnect }) => {
            const socket = net.connect({ host: '127.0.0.1', port: proxyPort }, onConnect);
            socket.setKeepAlive(true, 60_000);
            return socket;
          },
        },
      });
    }
    default:
      throw new Error(`unknown TIDINGS_TRANSPORT ${JSON.stringify(kind)}`);
  }
}

const db = pgDatabase(env.DATABASE_URL!, { max: 4 });
const relay = createRelay({
  name: env.TIDINGS_RELAY!,
  database: db,
  schema: env.TIDINGS_SCHEMA!,
  transport: await buildTransport(env.TIDINGS_TRANSPORT ?? 'table'),
  workerId: worker,
  batchSize: Number(env.TIDINGS_BATCH ?? 20),
  leaseTtlMs: Number(env.TIDINGS_LEASE_MS ?? 1_000),
  heartbeatIntervalMs: Number(env.TIDINGS_HEARTBEAT_MS ?? 200),
  pollIntervalMs: Number(env.TIDINGS_POLL_MS ?? 100),
  // The default policy (10 retries), its delays scaled down: outages are waited for, never counted,
  // so however long they last they must make no dead letter (a dead letter fails the run).
  retry: { minDelayMs: 20, maxDelayMs: 300 },
  onEvent: (event) => {
    if (event.type === 'delivered' || event.type === 'retry') return;
    say({ ...event, error: 'error' in event ? String(event.error) : undefined });
  },
});
await relay.start();
say({ type: 'started' });
process.on('SIGTERM', () => {
  void relay
    .stop({ graceMs: 1_000 })
    .then(() => Promise.all([db.close(), ...closers.map((close) => close())]))
    .finally(() => process.exit(0));
});
