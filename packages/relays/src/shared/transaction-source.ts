import { ConfigError, type Database, type Executor } from '@tidings/outbox';
import { inPgTransaction, type PgTransactionClient } from '@tidings/outbox/internal';

/** Runs `fn` in a transaction of your own and commits it when `fn` resolves. */
export type TransactionRunner<Trx> = <R>(fn: (trx: Trx) => Promise<R>) => Promise<R>;

/** A kysely instance: transactions run through `db.transaction().execute(fn)`. */
export interface KyselyLike<Trx> {
  transaction(): { execute<R>(fn: (trx: Trx) => Promise<R>): Promise<R> };
}

/** A node-postgres `Pool`: transactions run as BEGIN … COMMIT on one of its clients. */
export interface PgPoolLike<Client> {
  connect(): Promise<Client>;
}

/** A Drizzle database or a TypeORM `DataSource`/`EntityManager`: transactions run through `db.transaction(fn)`. */
export interface OrmTransactionLike<Trx> {
  transaction<R>(fn: (trx: Trx) => Promise<R>): Promise<R>;
}

/** A `PrismaClient`: transactions run through the interactive `$transaction(fn)`. */
export interface PrismaLike<Trx> {
  $transaction<R>(fn: (tx: Trx) => Promise<R>, options?: never): Promise<R>;
}

/** A MikroORM `EntityManager`: transactions run through `em.transactional(fn)` (on a fork of it). */
export interface MikroOrmLike<Trx> {
  transactional<R>(fn: (em: Trx) => Promise<R>, options?: never): Promise<R>;
}

/** The root `sql` of postgres.js: transactions run through `sql.begin(fn)`. */
export interface PostgresJsLike<Trx> {
  begin<R>(options: string, fn: (sql: Trx) => Promise<R>): PromiseLike<unknown>;
  unsafe(query: string, parameters?: never[]): PromiseLike<unknown>;
}

/** Where a consumer helper opens the transaction that holds a handler's effects and its inbox mark or checkpoint. */
export type TransactionSource =
  | TransactionRunner<any>
  | KyselyLike<any>
  | Database
  | PgPoolLike<any>
  | OrmTransactionLike<any>
  | PrismaLike<any>
  | MikroOrmLike<any>
  | PostgresJsLike<any>;

/**
 * The transaction a handler receives for a given source: a kysely `Transaction`, a pg
 * `PoolClient` inside BEGIN, tidings' `Executor`, or whatever your runner passes.
 */
export type TransactionOf<Source> =
  Source extends PostgresJsLike<infer Trx>
    ? Trx
    : Source extends TransactionRunner<infer Trx>
      ? Trx
      : Source extends KyselyLike<infer Trx>
        ? Trx
        : Source extends Database
          ? Executor
          : // A pg Pool's connect() is overloaded (promise and callback); match both to infer its client.
            Source extends { connect(): Promise<infer Client>; connect(callback: (...args: never[]) => void): void }
            ? Client
            : Source extends PgPoolLike<infer Client>
              ? Client
              : Source extends PrismaLike<infer Trx>
                ? Trx
                : Source extends MikroOrmLike<infer Trx>
                  ? Trx
                  : // TypeORM overloads transaction() (with and without an isolation level): match both.
                    Source extends { transaction(isolation: never, fn: (trx: infer Trx) => Promise<unknown>): Promise<unknown> }
                    ? Trx
                    : Source extends OrmTransactionLike<infer Trx>
                      ? Trx
                      : never;

/** Runs `fn` inside one transaction of `source`; commits when it resolves, rolls back when it throws. */
export async function runInTransaction<Source extends TransactionSource, R>(source: Source, fn: (trx: TransactionOf<Source>) => Promise<R>): Promise<R> {
  const any = source as unknown as Record<string, unknown>;
  // postgres.js's root sql is a function too (a tagged template), so it is told apart first.
  if (isPostgresJsRoot(source)) return (await source.begin(fn as (sql: unknown) => Promise<R>)) as R;
  if (typeof source === 'function') return (source as TransactionRunner<TransactionOf<Source>>)(fn);
  if (typeof any.$transaction === 'function') return (source as unknown as PrismaLike<TransactionOf<Source>>).$transaction(fn);
  if (typeof any.transactional === 'function') return (source as unknown as MikroOrmLike<TransactionOf<Source>>).transactional(fn);
  if (typeof any.executeQuery === 'function' && typeof any.transaction === 'function') {
    return (source as unknown as KyselyLike<TransactionOf<Source>>).transaction().execute(fn);
  }
  // A tidings Database, a Drizzle database, a TypeORM DataSource or EntityManager.
  if (typeof any.transaction === 'function') return (source as unknown as Database).transaction(fn as unknown as (trx: Executor) => Promise<R>);
  if (typeof any.connect === 'function') return inPgTransaction(source as unknown as PgPoolLike<PgTransactionClient>, fn as unknown as (trx: PgTransactionClient) => Promise<R>);
  throw new ConfigError('database', `expected ${acceptedSources}`);
}

/** The kinds of source accepted, for error messages. */
export const acceptedSources =
  'a kysely instance, a pg Pool, a tidings Database, a Drizzle database, a TypeORM DataSource or EntityManager, ' +
  'a PrismaClient, a MikroORM EntityManager, the sql of postgres.js, or a function (work) => … that runs work in a transaction';

function isPostgresJsRoot(value: unknown): value is { begin(fn: (sql: unknown) => Promise<unknown>): PromiseLike<unknown> } {
  const sql = value as { begin?: unknown; unsafe?: unknown } | null;
  return typeof value === 'function' && typeof sql?.begin === 'function' && typeof sql.unsafe === 'function';
}

export function isTransactionSource(value: unknown): value is TransactionSource {
  if (typeof value === 'function') return true;
  if (typeof value !== 'object' || value === null) return false;
  const any = value as Record<string, unknown>;
  return ['transaction', 'connect', '$transaction', 'transactional'].some((method) => typeof any[method] === 'function');
}

/**
 * The handle `loadCheckpoint` reads through: the source itself when it can run a query, else
 * a transaction of its own.
 */
export function readThrough<Source extends TransactionSource, R>(source: Source, fn: (db: unknown) => Promise<R>): Promise<R> {
  const any = source as unknown as Record<string, unknown>;
  if (typeof source !== 'function' && (typeof any.query === 'function' || typeof any.executeQuery === 'function')) return fn(source);
  return runInTransaction(source, (trx) => fn(trx));
}
