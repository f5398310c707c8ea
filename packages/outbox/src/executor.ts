import { CompiledQuery } from 'kysely';
import { ConfigError } from './errors.ts';
import { ormAdapter, type OrmTransactionHandle, type PlainHandles } from './orm-handles.ts';

/**
 * The one seam between tidings and a database client. Everything tidings runs goes through
 * `Executor.query`, so a kysely transaction, a pg client and PGlite all drive the same code.
 */
export interface QueryResult<R> {
  readonly rows: R[];
  readonly rowCount: number;
}

/** Runs one parameterised statement on a connection or transaction the caller owns. */
export interface Executor {
  query<R = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

/**
 * A database handle that tidings itself may take connections from: relays, migrations and admin
 * calls use it, never the caller's transaction.
 */
export interface Database extends Executor {
  /** Runs `fn` inside BEGIN … COMMIT on one connection; rolls back when it throws. */
  transaction<T>(fn: (trx: Executor) => Promise<T>): Promise<T>;
  /** Subscribes to NOTIFY on `channel`; resolves to a function that unsubscribes. */
  listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>>;
}

interface PgLikeResult {
  rows: unknown[];
  /** node-postgres */
  rowCount?: number | null;
  /** PGlite */
  affectedRows?: number;
}
/** What a pg `Client`, `PoolClient` or `Pool` offers. */
export interface PgQueryable {
  query(text: string, params?: unknown[]): Promise<PgLikeResult>;
}
/** A kysely `Transaction` (or any kysely instance). */
export interface KyselyLike {
  executeQuery(query: CompiledQuery): Promise<{ rows: unknown[]; numAffectedRows?: bigint }>;
}

/**
 * The caller's open transaction, as `publish()` and `inbox.handle()` take it: a kysely
 * `Transaction`, a pg `Client`/`PoolClient` inside BEGIN, a PGlite transaction, an `Executor`, a
 * postgres.js `sql.begin` transaction, a Drizzle `tx`, a TypeORM `EntityManager` or `QueryRunner`
 * in a transaction, a MikroORM `EntityManager` in `em.transactional`, or a Prisma interactive
 * `$transaction` client. Each is recognised by its shape; tidings imports none of the ORMs.
 *
 * @example
 * await db.transaction(async (tx) => {         // Drizzle
 *   await tx.insert(orders).values(order);
 *   await publish(tx, { topic: 'orders.created', key: order.id, payload: order });
 * });
 */
export type TransactionHandle = KyselyLike | PgQueryable | Executor | OrmTransactionHandle;

/** The kinds of handle accepted, for error messages. */
export const acceptedHandles =
  'a kysely Transaction, a pg Client/PoolClient inside BEGIN, a PGlite transaction, a tidings Executor, ' +
  'a postgres.js sql.begin() transaction, a Drizzle transaction (tx), a TypeORM EntityManager or QueryRunner, ' +
  'a MikroORM EntityManager (em.transactional) or a Prisma interactive $transaction client';

/** Driver connections found inside an ORM's handle are treated as if they had been passed. */
const plain: PlainHandles = {
  executor: (connection) => toExecutor(connection),
  verdict: () => 'ask-server',
};

/**
 * Wraps what the caller passed to `publish()` or `inbox.handle()` (a `TransactionHandle`).
 * Anything else is a `ConfigError` naming `argument` and the kinds accepted.
 */
export function toExecutor(db: unknown, argument = 'db'): Executor {
  const orm = ormAdapter(db, plain);
  if (orm) return orm.executor;
  if (isKysely(db)) return kyselyExecutor(db);
  if (isQueryable(db)) return pgExecutor(db);
  throw new ConfigError(argument, `expected ${acceptedHandles}; got ${describe(db)}.`);
}

function isKysely(db: unknown): db is KyselyLike {
  return typeof db === 'object' && db !== null && typeof (db as KyselyLike).executeQuery === 'function';
}

function isQueryable(db: unknown): db is PgQueryable {
  return typeof db === 'object' && db !== null && typeof (db as PgQueryable).query === 'function';
}

function pgExecutor(db: PgQueryable): Executor {
  return {
    async query<R>(text: string, params: readonly unknown[] = []) {
      const result = await db.query(text, params as unknown[]);
      return { rows: result.rows as R[], rowCount: result.rowCount ?? result.affectedRows ?? result.rows.length };
    },
  };
}

function kyselyExecutor(db: KyselyLike): Executor {
  return {
    async query<R>(text: string, params: readonly unknown[] = []) {
      const result = await db.executeQuery(CompiledQuery.raw(text, [...params]));
      const affected = result.numAffectedRows === undefined ? result.rows.length : Number(result.numAffectedRows);
      return { rows: result.rows as R[], rowCount: affected };
    },
  };
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value !== 'object') return typeof value;
  return value.constructor?.name ?? 'an object';
}
