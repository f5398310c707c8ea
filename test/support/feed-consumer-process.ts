/**
 * A feed consumer as its own process, for tests that kill it at random points. Configured through
 * the environment; its handler records every application in `<schema>.applied` (no unique key, so
 * a double apply shows) and dawdles a little so that kills land inside transactions too.
 */
import { pgDatabase, type Executor } from '@tidings/outbox';
import { pollingConsumer } from '@tidings/relays/polling';
import { sseConsumer, type FeedConsumerEvent, type FeedDelivery, type ReceivedEvent } from '@tidings/relays/sse';
import { websocketConsumer } from '@tidings/relays/websocket';

const env = process.env;
const schema = env.CONSUMER_SCHEMA!;
const database = pgDatabase(env.DATABASE_URL!, { max: 2 });
const options = {
  url: env.FEED_URL!,
  consumer: 'crash-test',
  schema,
  database,
  retry: { minDelayMs: 50, maxDelayMs: 500 },
  reconnect: { minDelayMs: 50, maxDelayMs: 500 },
  async handler(trx: Executor, event: ReceivedEvent<FeedDelivery>) {
    await trx.query(`INSERT INTO "${schema}".applied (event_id, cursor) VALUES ($1, $2)`, [event.eventId, event.delivery.cursor]);
    if (Math.random() < 0.3) await trx.query('SELECT pg_sleep(0.005)');
  },
  onEvent: (event: FeedConsumerEvent) => {
    if ('error' in event) process.stderr.write(`consumer: ${event.type}: ${String(event.error)}\n`);
  },
};
const consumer =
  env.FEED_KIND === 'sse'
    ? sseConsumer({ ...options, idleTimeoutMs: 5_000 })
    : env.FEED_KIND === 'websocket'
      ? websocketConsumer({ ...options, topics: [env.FEED_TOPIC!], idleTimeoutMs: 5_000, maxInFlight: 7 })
      : pollingConsumer({ ...options, limit: 7, waitSeconds: 1 });
process.stdout.write('started\n');
consumer.done.then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`consumer stopped: ${String(error)}\n`);
    process.exit(2);
  },
);
process.on('SIGTERM', () => void consumer.close());
