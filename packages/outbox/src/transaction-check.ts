import { NotInTransactionError } from './errors.ts';
import { toExecutor, type Executor } from './executor.ts';
import { ormAdapter, type PlainHandles } from './orm-handles.ts';

/**
 * What the handle itself can tell, without a round trip, about whether it is inside a transaction
 * block. Only answers that are certain are given; anything else is asked of the server.
 */
export type TransactionVerdict = 'inside' | 'outside' | 'ask-server';

/** @internal What tidings looks at on a handle it was given. */
export interface HandleShape {
  executeQuery?: unknown;
  isTransaction?: unknown;
  getTransactionStatus?: unknown;
  totalCount?: unknown;
  release?: unknown;
}

/**
 * Handles whose nature tidings knows because it made them: the `Executor` a tidings `Database`
 * passes to `transaction()` is inside a transaction whose COMMIT tidings checks; a pool-backed
 * `Database` runs every statement in a transaction of its own.
 */
const known = new WeakMap<object, 'inside' | 'outside'>();

/** @internal Records that `handle` is a transaction tidings opened and whose COMMIT it checks. */
export function markTransaction<T extends object>(handle: T): T {
  known.set(handle, 'inside');
  return handle;
}

/** @internal Records that `handle` runs each statement in autocommit (a pool-backed `Database`). */
export function markAutocommit<T extends object>(handle: T): T {
  known.set(handle, 'outside');
  return handle;
}

/** @internal Whether `markTransaction` recorded `handle` (and nothing forgot it since). */
export function isMarkedTransaction(handle: object): boolean {
  return known.get(handle) === 'inside';
}

/** @internal Forgets what `markTransaction` recorded: the handle goes back to a pool that others use. */
export function forgetMark(handle: object): void {
  known.delete(handle);
}

/** Driver connections found inside an ORM's handle are judged as if they had been passed. */
const plain: PlainHandles = {
  executor: (connection) => toExecutor(connection),
  verdict: (connection) => transactionVerdict(connection),
};

export function transactionVerdict(handle: unknown): TransactionVerdict {
  // An ORM's transaction (or postgres.js's) says what it knows; see orm-handles.ts.
  const orm = ormAdapter(handle, plain);
  if (orm) return orm.verdict();
  if (typeof handle !== 'object' || handle === null) return 'ask-server';
  const marked = known.get(handle);
  if (marked) return marked;
  const h = handle as HandleShape;
  // kysely: a Transaction is only made by transaction().execute() or startTransaction(), both of
  // which ran BEGIN, and kysely refuses queries on it once it has committed or rolled back. Any
  // other kysely instance runs each query on whatever pooled connection is free.
  if (typeof h.executeQuery === 'function' && typeof h.isTransaction === 'boolean') {
    return h.isTransaction ? 'inside' : 'outside';
  }
  // node-postgres Client / PoolClient: the transaction status PostgreSQL sent in its last
  // ReadyForQuery message, 'T' = inside a transaction block (protocol-level, not a guess).
  if (typeof h.getTransactionStatus === 'function') {
    const status: unknown = (h.getTransactionStatus as () => unknown).call(handle);
    if (status === 'T') return 'inside';
    if (status === 'I' || status === null) return 'outside';
    return 'ask-server'; // 'E' (failed block): let PostgreSQL report it
  }
  // node-postgres Pool: every query may run on a different connection, in its own transaction.
  if (typeof h.totalCount === 'number' && typeof h.release !== 'function') return 'outside';
  return 'ask-server';
}

/**
 * Refuses, before anything is written, a handle that is not inside a transaction block: a write
 * there would commit on its own, apart from the caller's business data.
 *
 * When the handle cannot tell (a plain `Executor`, PGlite, an ORM's wrapper), PostgreSQL is asked
 * with `LOCK TABLE … IN ROW EXCLUSIVE MODE` on the table about to be written: the server rejects
 * LOCK outside a transaction block with SQLSTATE 25P01, and inside one it takes exactly the lock
 * the following INSERT takes anyway, so the probe changes nothing else. One round trip, only for
 * handles that cannot tell.
 *
 * @internal Shared by `publish()` and `inbox.handle()`.
 */
export async function requireTransaction(
  handle: unknown,
  executor: Executor,
  what: string,
  table: string,
  translate: (error: unknown) => unknown,
): Promise<void> {
  const verdict = transactionVerdict(handle);
  if (verdict === 'inside') return;
  if (verdict === 'outside') throw new NotInTransactionError(what);
  try {
    await executor.query(`LOCK TABLE ${table} IN ROW EXCLUSIVE MODE`);
  } catch (error) {
    if ((error as { code?: unknown } | null)?.code === '25P01') throw new NotInTransactionError(what);
    throw translate(error);
  }
}
