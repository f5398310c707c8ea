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

/** Where a consumer helper opens the transaction that holds a handler's effects and its inbox mark or checkpoint. */
export type TransactionSource = TransactionRunner<any> | KyselyLike<any> | Database | PgPoolLike<any>;

/**
 * The transaction a handler receives for a given source: a kysely `Transaction`, a pg
 * `PoolClient` inside BEGIN, tidings' `Executor`, or whatever your runner passes.
 */
export type TransactionOf<Source> =
  Source extends TransactionRunner<infer Trx>
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
            : never;

/** Runs `fn` inside one transaction of `source`; commits when it resolves, rolls back when it throws. */
export async function runInTransaction<Source extends TransactionSource, R>(source: Source, fn: (trx: TransactionOf<Source>) => Promise<R>): Promise<R> {
  const any = source as unknown as Record<string, unknown>;
  if (typeof source === 'function') return (source as TransactionRunner<TransactionOf<Source>>)(fn);
  if (typeof any.executeQuery === 'function' && typeof any.transaction === 'function') {
    return (source as unknown as KyselyLike<TransactionOf<Source>>).transaction().execute(fn);
  }
  if (typeof any.transaction === 'function') return (source as unknown as Database).transaction(fn as unknown as (trx: Executor) => Promise<R>);
  if (typeof any.connect === 'function') return inPgTransaction(source as unknown as PgPoolLike<PgTransactionClient>, fn as unknown as (trx: PgTransactionClient) => Promise<R>);
  throw new ConfigError('database', 'expected a kysely instance, a pg Pool, a tidings Database, or a function (work) => … that runs work in a transaction');
}

export function isTransactionSource(value: unknown): value is TransactionSource {
  if (typeof value === 'function') return true;
  if (typeof value !== 'object' || value === null) return false;
  const any = value as Record<string, unknown>;
  return typeof any.transaction === 'function' || typeof any.connect === 'function';
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
