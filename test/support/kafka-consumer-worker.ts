/**
 * A Kafka consumer helper as its own process, for tests that kill it. Its handler records each
 * event in the `effects` table of the test schema. Prints one JSON line per consumer event.
 * Environment: DATABASE_URL, KAFKA_BROKERS, TIDINGS_SCHEMA, TIDINGS_TOPIC, TIDINGS_CONSUMER,
 * TIDINGS_MODE (`inbox` or `checkpoint`), TIDINGS_LIBRARY (`kafkajs`, the default, or `platformatic`),
 * and optionally TIDINGS_CRASH_AFTER_COMMITS=<n>: SIGKILLs itself right after its n-th database
 * commit, before the Kafka offset commit that follows it.
 */
import { consumeKafka, type KafkaConsumerMode, type KafkaLibrary } from '@tidings/relays/kafka';
import pg from 'pg';

const env = process.env;
const say = (line: object): void => void process.stdout.write(`${JSON.stringify(line)}\n`);
const schema = env.TIDINGS_SCHEMA!;
const name = env.TIDINGS_CONSUMER!;
const crashAfter = Number(env.TIDINGS_CRASH_AFTER_COMMITS ?? 0);
const pool = new pg.Pool({ connectionString: env.DATABASE_URL!, max: 4 });
pool.on('error', () => {});
let commits = 0;
const library = (env.TIDINGS_LIBRARY ?? 'kafkajs') as KafkaLibrary;

await consumeKafka({
  library,
  brokers: env.KAFKA_BROKERS!,
  client: { logLevel: 'nothing', connectTimeoutMs: 1_000 },
  topics: [env.TIDINGS_TOPIC!],
  consumer: name,
  mode: env.TIDINGS_MODE as KafkaConsumerMode,
  schema,
  database: pool,
  batchSize: Number(env.TIDINGS_BATCH ?? 20),
  partitionsConsumedConcurrently: 2,
  sessionTimeoutMs: 6_000,
  heartbeatIntervalMs: 500,
  retry: { minDelayMs: 50, maxDelayMs: 1_000 },
  handler: async (client, event) => {
    await client.query(`INSERT INTO "${schema}".effects (consumer, event_id, key, partition, record_offset) VALUES ($1, $2, $3, $4, $5)`, [
      name,
      event.eventId,
      event.key,
      event.delivery.partition,
      event.delivery.offset,
    ]);
  },
  onEvent: (event) => {
    say({ ...event, error: 'error' in event ? String(event.error) : undefined });
    if (event.type === 'committed' && crashAfter > 0 && ++commits >= crashAfter) {
      say({ type: 'crashing', why: `killed after database commit #${commits}, before its Kafka offset commit` });
      process.kill(process.pid, 'SIGKILL');
    }
  },
});
say({ type: 'started' });
