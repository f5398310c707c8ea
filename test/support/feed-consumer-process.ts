/**
 * A feed consumer as its own process, for tests that kill it at random points. Configured through
 * the environment; its handler records every application in `<schema>.applied` (no unique key, so
 * a double apply shows) and dawdles a little so that kills land inside transactions too.
 */
import { inbox } from '@tidings/inbox';
import { pgDatabase, type Executor } from '@tidings/outbox';
import { pollingConsumer } from '@tidings/relays/polling';
import { sseConsumer } from '@tidings/relays/sse';

const env = process.env;
const schema = env.CONSUMER_SCHEMA!;
const database = pgDatabase(env.DATABASE_URL!, { max: 2 });
const options = {
  url: env.FEED_URL!,
  database,
  inbox: inbox({ consumer: 'crash-test', schema }),
  backoff: { initialMs: 50, maxMs: 500 },
  async handle(event: { eventId: string; cursor: string }, trx: Executor) {
    await trx.query(`INSERT INTO "${schema}".applied (event_id, cursor) VALUES ($1, $2)`, [event.eventId, event.cursor]);
    if (Math.random() < 0.3) await trx.query('SELECT pg_sleep(0.005)');
  },
  onError: (error: unknown) => process.stderr.write(`consumer: ${String(error)}\n`),
};
const consumer = env.FEED_KIND === 'sse' ? sseConsumer({ ...options, idleTimeoutMs: 5_000 }) : pollingConsumer({ ...options, limit: 7, waitSeconds: 1 });
process.stdout.write('started\n');
consumer.done.then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`consumer stopped: ${String(error)}\n`);
    process.exit(2);
  },
);
process.on('SIGTERM', () => void consumer.stop());
