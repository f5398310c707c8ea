/**
 * A relay worker with the RabbitMQ transport, as its own process, for tests that kill it. Configured
 * through the environment; prints one JSON line per relay event on stdout.
 */
import { createRelay, pgDatabase } from '@tidings/outbox';
import { rabbitmqTransport } from '@tidings/relays/rabbitmq';

const env = process.env;
const db = pgDatabase(env.DATABASE_URL!, { max: 4 });
const say = (line: object): void => void process.stdout.write(`${JSON.stringify(line)}\n`);

const relay = createRelay({
  name: env.TIDINGS_RELAY!,
  database: db,
  schema: env.TIDINGS_SCHEMA!,
  topics: [env.TIDINGS_TOPIC!],
  transport: rabbitmqTransport({ url: env.RABBITMQ_URL!, reconnect: { minDelayMs: 50, maxDelayMs: 500 } }),
  workerId: env.TIDINGS_WORKER!,
  batchSize: Number(env.TIDINGS_BATCH ?? 50),
  leaseTtlMs: 2000,
  heartbeatIntervalMs: 300,
  pollIntervalMs: 100,
  retry: { minDelayMs: 20, maxDelayMs: 200, retries: 1000 },
  onEvent: (event) => {
    if (event.type === 'retry') return;
    say({ ...event, error: 'error' in event ? String(event.error) : undefined });
  },
});
await relay.start();
say({ type: 'started' });
