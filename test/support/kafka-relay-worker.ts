/**
 * A relay worker with the Kafka transport, as its own process, for tests that kill it. Prints one
 * JSON line per relay event on stdout. Environment: DATABASE_URL, KAFKA_BROKERS, TIDINGS_SCHEMA,
 * TIDINGS_RELAY, TIDINGS_TOPIC, TIDINGS_WORKER, and optionally TIDINGS_CRASH:
 * - `after-ack:<n>`: on its n-th send, SIGKILLs itself once Kafka acknowledged the batch and
 *   before the relay records it (the batch will be sent again: duplicates);
 * - `in-flight:<n>`: SIGKILLs itself while its n-th send's request is on its way to Kafka.
 */
import { createRelay, pgDatabase, type Transport } from '@tidings/outbox';
import { kafkaTransport } from '@tidings/relays/kafka';

const env = process.env;
const say = (line: object): void => void process.stdout.write(`${JSON.stringify(line)}\n`);
const die = (why: string): never => {
  say({ type: 'crashing', why });
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
};

const inner = kafkaTransport({
  brokers: env.KAFKA_BROKERS!,
  sendTimeoutMs: 5_000,
  client: { logLevel: 'nothing', connectTimeoutMs: 1_000, requestTimeoutMs: 5_000 },
});
const [crashMode, crashAt] = (env.TIDINGS_CRASH ?? '').split(':');
let sends = 0;
const transport: Transport = {
  name: inner.name,
  capabilities: inner.capabilities,
  async send(batch, signal) {
    const n = ++sends;
    if (crashMode === 'in-flight' && n === Number(crashAt)) {
      const sending = inner.send(batch, signal);
      setTimeout(() => die(`killed with send #${n} (${batch.length} events) in flight`), 2);
      return sending;
    }
    const outcomes = await inner.send(batch, signal);
    if (crashMode === 'after-ack' && n >= Number(crashAt) && outcomes.every((o) => o.status === 'delivered')) {
      die(`killed after Kafka acknowledged send #${n} (${batch.length} events), before the relay recorded it`);
    }
    return outcomes;
  },
  close: () => inner.close(),
};

const relay = createRelay({
  name: env.TIDINGS_RELAY!,
  database: pgDatabase(env.DATABASE_URL!, { max: 4 }),
  schema: env.TIDINGS_SCHEMA!,
  topics: [env.TIDINGS_TOPIC!],
  transport,
  workerId: env.TIDINGS_WORKER!,
  batchSize: Number(env.TIDINGS_BATCH ?? 50),
  leaseTtlMs: 2_000,
  heartbeatIntervalMs: 300,
  pollIntervalMs: 100,
  retry: { minDelayMs: 50, maxDelayMs: 500, retries: 1_000 },
  onEvent: (event) => say({ ...event, error: 'error' in event ? String(event.error) : undefined }),
});
await relay.start();
say({ type: 'started' });
process.on('SIGTERM', () => void relay.stop({ graceMs: 2_000 }).then(() => process.exit(0)));
