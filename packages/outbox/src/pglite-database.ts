import type { Database, Executor, PgQueryable } from './executor.ts';
import { toExecutor } from './executor.ts';
import { markTransaction } from './transaction-check.ts';

/** The part of a PGlite instance that tidings uses (typed here so PGlite stays an optional dependency). */
export interface PGliteLike extends PgQueryable {
  transaction<T>(fn: (tx: PgQueryable) => Promise<T>): Promise<T>;
  listen(channel: string, callback: (payload: string) => void): Promise<() => Promise<void>>;
}

/**
 * A `Database` over PGlite, PostgreSQL compiled to WebAssembly and run in process: the embedded
 * default. PGlite serves one connection, so statements and transactions take turns on it; LISTEN
 * shares it too, which is why relays keep polling as well.
 *
 * @example
 * import { PGlite } from '@electric-sql/pglite';
 * const db = pgliteDatabase(await PGlite.create());
 */
export function pgliteDatabase(pglite: PGliteLike): Database {
  const executor = toExecutor(pglite);
  return {
    query: executor.query,
    transaction<T>(fn: (trx: Executor) => Promise<T>): Promise<T> {
      // PGlite's transaction() refuses a COMMIT that PostgreSQL answered with ROLLBACK.
      return pglite.transaction((tx) => fn(markTransaction(toExecutor(tx))));
    },
    listen(channel, onNotify) {
      return pglite.listen(channel, onNotify);
    },
  };
}
