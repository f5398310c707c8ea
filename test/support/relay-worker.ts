/**
 * The one relay worker process of the tests and the bench, so that they can SIGKILL, SIGSTOP and
 * SIGCONT it. Configured by one JSON object in TIDINGS_RELAY_WORKER (`RelayWorkerConfig`, see
 * worker-process.ts, whose `startRelayWorker` starts it). Prints one JSON line per relay event on
 * stdout (every field of the event, `error` as text, `at` in epoch milliseconds, and `held`, the
 * partitions it holds, after a lease changed hands), then `started`. SIGTERM stops it gracefully.
 *
 * `crash` makes it SIGKILL itself at a chosen send: `after-ack` once the destination acknowledged
 * send number `send` (or any later one) and before the relay recorded it, so that batch is sent again;
 * `in-flight` while send number `send` is on its way to the destination.
 */
import { createRelay, pgDatabase, type Transport } from '@tidings/outbox';
import pg from 'pg';
import type { RelayWorkerConfig, WorkerTransport } from './worker-process.ts';

const config = JSON.parse(process.env.TIDINGS_RELAY_WORKER ?? 'null') as RelayWorkerConfig | null;
if (config === null) throw new Error('relay-worker.ts: set TIDINGS_RELAY_WORKER to its JSON configuration (see startRelayWorker in worker-process.ts)');
const workerId = config.relay.workerId ?? 'worker';
const omit = new Set(config.omit ?? ['retry']);
const closers: (() => Promise<unknown>)[] = [];
const say = (line: object): void => void process.stdout.write(`${JSON.stringify(line)}\n`);
const epochMs = (): number => performance.timeOrigin + performance.now();

async function buildTransport(spec: WorkerTransport): Promise<Transport> {
  switch (spec.kind) {
    case 'table': {
      const { tableTransport } = await import('./table-transport.ts');
      const pool = new pg.Pool({ connectionString: spec.url, max: 2, connectionTimeoutMillis: 2_000 });
      pool.on('error', () => {});
      closers.push(() => pool.end());
      return tableTransport(pool, spec.schema, { worker: workerId });
    }
    case 'memory': {
      const { memoryTransport, MemoryBroker } = await import('@tidings/relays/testing');
      return memoryTransport({ broker: new MemoryBroker({ retain: 1 }) });
    }
    case 'rabbitmq': {
      const { rabbitmqTransport } = await import('@tidings/relays/rabbitmq');
      return rabbitmqTransport(spec.options);
    }
    case 'webhook': {
      const { webhookTransport } = await import('@tidings/relays/webhook');
      return webhookTransport(spec.options);
    }
    case 'kafka': {
      const { kafkaTransport } = await import('@tidings/relays/kafka');
      const { proxyPort } = spec;
      if (proxyPort === undefined) return kafkaTransport(spec.options);
      const net = await import('node:net');
      return kafkaTransport({
        ...spec.options,
        client: {
          ...spec.options.client,
          // Every broker connection goes through the test's fault proxy (one broker: one address).
          socketFactory: ({ onConnect }) => {
            const socket = net.connect({ host: '127.0.0.1', port: proxyPort }, onConnect);
            socket.setKeepAlive(true, 60_000);
            return socket;
          },
        },
      });
    }
  }
}

/** Wraps `inner` so that the process kills itself at the send `config.crash` names. */
function crashing(inner: Transport, crash: NonNullable<RelayWorkerConfig['crash']>): Transport {
  const die = (why: string): never => {
    say({ type: 'crashing', why });
    process.kill(process.pid, 'SIGKILL');
    throw new Error('unreachable');
  };
  let sends = 0;
  return {
    name: inner.name,
    capabilities: inner.capabilities,
    async send(batch, signal) {
      const n = ++sends;
      if (crash.when === 'in-flight' && n === crash.send) {
        const sending = inner.send(batch, signal);
        setTimeout(() => die(`killed with send #${n} (${batch.length} events) in flight`), 2);
        return sending;
      }
      const outcomes = await inner.send(batch, signal);
      if (crash.when === 'after-ack' && n >= crash.send && outcomes.every((o) => o.status === 'delivered')) {
        die(`killed after the destination acknowledged send #${n} (${batch.length} events), before the relay recorded it`);
      }
      return outcomes;
    },
    close: () => inner.close(),
  };
}

const built = await buildTransport(config.transport);
const db = pgDatabase(config.databaseUrl, { max: config.databasePoolSize ?? 4 });
const relay = createRelay({
  ...config.relay,
  database: db,
  transport: config.crash ? crashing(built, config.crash) : built,
  onEvent: (event) => {
    if (omit.has(event.type)) return;
    const leases = event.type === 'lease-acquired' || event.type === 'lease-released' || event.type === 'lease-lost';
    say({
      ...event,
      error: 'error' in event ? String(event.error) : undefined,
      at: epochMs(),
      held: leases ? relay.status().partitions.length : undefined,
    });
  },
});
await relay.start();
say({ type: 'started', at: epochMs(), held: relay.status().partitions.length });
process.on('SIGTERM', () => {
  void relay
    .stop({ graceMs: config.stopGraceMs ?? 2_000 })
    .then(() => Promise.all([db.close(), ...closers.map((close) => close())]))
    .finally(() => process.exit(0));
});
