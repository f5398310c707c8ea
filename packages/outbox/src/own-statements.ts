import type { Database } from './executor.ts';

const bounded = new WeakMap<Database, Database>();

/**
 * @internal Records `timed` as the handle on which relays and feeds run their own statements over
 * `database` (reads, cursor and lease writes): the same database, with a time limit per statement.
 */
export function offerOwnStatements<T extends Database>(database: T, timed: Database): T {
  bounded.set(database, timed);
  return database;
}

/**
 * @internal The handle a relay or feed runs its own statements on: the time-limited variant of
 * `database` when it offers one (pgDatabase's `queryTimeoutMs`), else `database` itself. Always the
 * same object for the same database, so what is shared per database stays shared.
 */
export function ownStatements(database: Database): Database {
  return bounded.get(database) ?? database;
}
