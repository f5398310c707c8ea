import pg from 'pg';
import { ConfigError } from './errors.ts';
import type { Database, Executor } from './executor.ts';
import { toExecutor } from './executor.ts';
import { wholeOption } from './options.ts';
import { inPgTransaction } from './pg-transaction.ts';
import { endWithin } from './pg-connection-end.ts';
import { PgListener } from './pg-listener.ts';
import { offerOwnStatements } from './own-statements.ts';
import { markAutocommit, markTransaction } from './transaction-check.ts';

export interface PgDatabaseOptions {
  /** Largest number of pooled connections tidings opens; LISTEN takes one more. Default 10. */
  readonly max?: number;
  /** TCP keepalive on every connection, so the kernel notices a peer that vanished. Default true. */
  readonly keepAlive?: boolean;
  /** Idle time before the first keepalive probe. Default 0: the operating system's setting. */
  readonly keepAliveInitialDelayMs?: number;
  /** The longest opening a connection may take. Default 10000. */
  readonly connectTimeoutMs?: number;
  /**
   * The longest a statement of a relay or feed (reads, cursor and lease writes, heartbeats) may wait
   * for its answer; the connection is then dropped and the work retried on another. Migrations,
   * cleanup, admin calls, `transaction()` and the caller's transactions given to `publish()` are
   * never limited. Default 10000; 0 turns it off.
   */
  readonly queryTimeoutMs?: number;
  /** How often the shared LISTEN connection must answer a query, or be replaced. Default 10000. */
  readonly listenHeartbeatMs?: number;
}

const knownOptions = new Set(['max', 'keepAlive', 'keepAliveInitialDelayMs', 'connectTimeoutMs', 'queryTimeoutMs', 'listenHeartbeatMs']);
/** Settings of the pool itself: with a pool of your own, set them on it. */
const poolOptions = ['max', 'keepAlive', 'keepAliveInitialDelayMs', 'connectTimeoutMs'] as const;

interface ResolvedPgOptions {
  readonly max: number;
  readonly keepAlive: boolean;
  readonly keepAliveInitialDelayMs: number;
  readonly connectTimeoutMs: number;
  readonly queryTimeoutMs: number;
  readonly listenHeartbeatMs: number;
}

/**
 * A `Database` over node-postgres, for relays, feeds, migrations and admin calls. Pass a connection
 * string (tidings owns and closes the pool) or your own `pg.Pool` (you configure and close it).
 * Every relay, feed and dispatcher using this database shares one LISTEN connection: a process holds
 * at most `max` + 1 server connections however many relays it runs.
 *
 * @example
 * const database = pgDatabase(process.env.DATABASE_URL!, { max: 4, queryTimeoutMs: 5_000 });
 */
export function pgDatabase(source: string | pg.Pool, options: PgDatabaseOptions = {}): Database & { close(): Promise<void> } {
  const owned = typeof source === 'string';
  if (!owned && !(source instanceof pg.Pool) && typeof (source as { connect?: unknown } | null)?.connect !== 'function') {
    throw new ConfigError('source', 'pass a PostgreSQL connection string or a pg.Pool');
  }
  const settings = resolvePgOptions(options, owned);
  const pool = owned
    ? new pg.Pool({
        connectionString: source,
        max: settings.max,
        keepAlive: settings.keepAlive,
        keepAliveInitialDelayMillis: settings.keepAliveInitialDelayMs,
        // The connect timeout goes to each connection, not to the pool: pg.Pool would also apply it to
        // the wait for a free connection, turning a busy pool into errors.
        Client: clientWithConnectTimeout(settings.connectTimeoutMs),
      })
    : source;
  // An idle client that loses its connection must not crash the process; the pool replaces it.
  if (owned) pool.on('error', () => {});
  const open = new Set<pg.Client>();
  if (owned) {
    pool.on('connect', (client) => open.add(client));
    pool.on('remove', (client) => open.delete(client));
  }
  const listener = new PgListener({
    client: owned ? { ...pool.options, connectionTimeoutMillis: settings.connectTimeoutMs } : pool.options,
    heartbeatMs: settings.listenHeartbeatMs,
    queryTimeoutMs: settings.queryTimeoutMs,
  });
  const run = (timeout: { query_timeout?: number }) =>
    async function query<R>(text: string, params: readonly unknown[] = []) {
      // A statement that timed out fails its connection: the pool drops it rather than reuse a
      // connection whose answer may still arrive (or never will, when the network black-holes it).
      const result = await pool.query({ text, values: params as unknown[], ...timeout });
      return { rows: result.rows as R[], rowCount: result.rowCount ?? result.rows.length };
    };
  const transaction = <T>(fn: (trx: Executor) => Promise<T>): Promise<T> =>
    inPgTransaction(pool, (client) => fn(markTransaction(toExecutor(client))));
  const listen: Database['listen'] = (channel, onNotify) => listener.listen(channel, onNotify);

  // Each statement of `query` runs on whichever pooled connection is free, in a transaction of its own.
  const database = markAutocommit({
    query: run({}),
    transaction,
    listen,
    async close() {
      await listener.close();
      if (owned) await endWithin(pool.end(), open);
    },
  });
  // Relays and feeds run their reads and cursor writes with the time limit; migrations, cleanup,
  // admin calls and every transaction (the caller's included) run without it.
  const limited = settings.queryTimeoutMs > 0 ? markAutocommit({ query: run({ query_timeout: settings.queryTimeoutMs }), transaction, listen }) : database;
  return offerOwnStatements(database, limited);
}

function resolvePgOptions(options: PgDatabaseOptions, owned: boolean): ResolvedPgOptions {
  if (typeof options !== 'object' || options === null) throw new ConfigError('options', 'expected an object of pgDatabase options');
  for (const key of Object.keys(options)) {
    if (!knownOptions.has(key)) throw new ConfigError(key, `unknown pgDatabase option; the options are ${[...knownOptions].join(', ')}`);
  }
  if (!owned) {
    const poolOnly = poolOptions.filter((key) => options[key] !== undefined);
    if (poolOnly.length > 0) {
      throw new ConfigError(poolOnly[0]!, 'this is a setting of the pool: with a pg.Pool of your own, set it on that pool (keepAlive, connectionTimeoutMillis, max)');
    }
  }
  if (options.keepAlive !== undefined && typeof options.keepAlive !== 'boolean') {
    throw new ConfigError('keepAlive', `expected true or false, got ${JSON.stringify(options.keepAlive)}`);
  }
  return {
    max: wholeOption('max', options.max, 10, 1, 10_000),
    keepAlive: options.keepAlive ?? true,
    keepAliveInitialDelayMs: wholeOption('keepAliveInitialDelayMs', options.keepAliveInitialDelayMs, 0, 0),
    connectTimeoutMs: wholeOption('connectTimeoutMs', options.connectTimeoutMs, 10_000, 1),
    queryTimeoutMs: wholeOption('queryTimeoutMs', options.queryTimeoutMs, 10_000, 0),
    listenHeartbeatMs: wholeOption('listenHeartbeatMs', options.listenHeartbeatMs, 10_000, 100),
  };
}

function clientWithConnectTimeout(connectTimeoutMs: number): typeof pg.Client {
  return class extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      super({ ...(typeof config === 'string' ? { connectionString: config } : config), connectionTimeoutMillis: connectTimeoutMs });
    }
  };
}
