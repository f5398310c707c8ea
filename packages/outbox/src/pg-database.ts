import pg from 'pg';
import type { Database, Executor } from './executor.ts';
import { toExecutor } from './executor.ts';
import { inPgTransaction } from './pg-transaction.ts';
import { markAutocommit, markTransaction } from './transaction-check.ts';

export interface PgDatabaseOptions {
  /** Largest number of connections tidings opens (plus one for LISTEN). Default 10. */
  readonly max?: number;
}

/**
 * A `Database` over node-postgres, for relays, migrations and admin calls. Pass a connection string
 * (tidings owns and closes the pool) or your own `pg.Pool` (you close it).
 */
export function pgDatabase(source: string | pg.Pool, options: PgDatabaseOptions = {}): Database & { close(): Promise<void> } {
  const owned = typeof source === 'string';
  const pool = owned ? new pg.Pool({ connectionString: source, max: options.max ?? 10 }) : source;
  // An idle client that loses its connection must not crash the process; the pool replaces it.
  if (owned) pool.on('error', () => {});
  const executor = toExecutor(pool);
  const listeners = new Set<() => Promise<void>>();

  // Each statement of `query` runs on whichever pooled connection is free, in a transaction of its own.
  return markAutocommit({
    query: executor.query,
    async transaction<T>(fn: (trx: Executor) => Promise<T>): Promise<T> {
      return inPgTransaction(pool, (client) => fn(markTransaction(toExecutor(client))));
    },
    async listen(channel, onNotify) {
      const stop = await listenWithReconnect(pool.options, channel, onNotify);
      listeners.add(stop);
      return async () => {
        listeners.delete(stop);
        await stop();
      };
    },
    async close() {
      await Promise.all([...listeners].map((stop) => stop()));
      if (owned) await pool.end();
    },
  });
}

/**
 * LISTEN on a dedicated connection that is re-opened after it drops. Notifications are only hints
 * (relays poll too), so a gap while reconnecting costs latency, never events.
 */
async function listenWithReconnect(
  config: pg.PoolConfig,
  channel: string,
  onNotify: (payload: string) => void,
): Promise<() => Promise<void>> {
  let client: pg.Client | undefined;
  let stopped = false;
  let retryTimer: NodeJS.Timeout | undefined;

  const connect = async (): Promise<void> => {
    const next = new pg.Client(config);
    next.on('notification', (message) => {
      if (message.channel === channel) onNotify(message.payload ?? '');
    });
    const lost = (): void => {
      if (client === next) scheduleReconnect();
    };
    next.on('error', lost);
    next.on('end', lost);
    try {
      await next.connect();
      await next.query(`LISTEN "${channel.replaceAll('"', '""')}"`);
    } catch (error) {
      void next.end().catch(() => {});
      throw error;
    }
    client = next;
    // Whatever was notified while disconnected is lost: wake everyone once to look.
    onNotify('*');
  };
  const scheduleReconnect = (): void => {
    if (stopped || retryTimer) return;
    const dead = client;
    client = undefined;
    void dead?.end().catch(() => {});
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      if (!stopped) connect().catch(scheduleReconnect);
    }, 1000);
    retryTimer.unref();
  };

  await connect();
  return async () => {
    stopped = true;
    if (retryTimer) clearTimeout(retryTimer);
    const current = client;
    client = undefined;
    await current?.end().catch(() => {});
  };
}
