/**
 * A relay worker as its own process, for tests that kill or pause workers. Configured through the
 * environment; prints one JSON line per relay event on stdout.
 */
import { createRelay, pgDatabase } from '@tidings/outbox';
import pg from 'pg';
import { tableTransport } from './table-transport.ts';

const env = process.env;
const schema = env.TIDINGS_SCHEMA!;
const worker = env.TIDINGS_WORKER!;
const db = pgDatabase(env.DATABASE_URL!, { max: 4 });
const pool = new pg.Pool({ connectionString: env.DATABASE_URL!, max: 2 });
pool.on('error', () => {});

const say = (line: object): void => void process.stdout.write(`${JSON.stringify(line)}\n`);
const relay = createRelay({
  name: env.TIDINGS_RELAY!,
  database: db,
  schema,
  transport: tableTransport(pool, schema, { worker }),
  workerId: worker,
  batchSize: Number(env.TIDINGS_BATCH ?? 50),
  leaseTtlMs: Number(env.TIDINGS_LEASE_MS ?? 2000),
  heartbeatIntervalMs: Number(env.TIDINGS_HEARTBEAT_MS ?? 300),
  pollIntervalMs: 100,
  onEvent: (event) => {
    if (event.type === 'delivered' || event.type === 'retry') return;
    say({ ...event, error: 'error' in event ? String(event.error) : undefined });
  },
});
await relay.start();
say({ type: 'started' });
process.on('SIGTERM', () => {
  void relay
    .stop({ graceMs: 2000 })
    .then(() => Promise.all([pool.end(), db.close()]))
    .then(() => process.exit(0));
});
