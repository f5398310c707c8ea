import { TransactionAbortedError } from './errors.ts';
import type { Executor } from './executor.ts';
import { isOrmHandle } from './orm-handles.ts';
import { isMarkedTransaction, type HandleShape } from './transaction-check.ts';

// The two checks that keep an aborted transaction from passing for a committed one. Imported as
// `#commit-check` (see package.json `imports`), the module a test mutant replaces.

/** @internal Throws `TransactionAbortedError` for a COMMIT whose command tag says `ROLLBACK` (see `inPgTransaction`). */
export function requireCommitted(tag: unknown): void {
  if (tag === 'ROLLBACK') throw new TransactionAbortedError('transaction', 'PostgreSQL answered COMMIT with ROLLBACK');
}

/**
 * Fails when the caller's transaction was aborted by a statement whose error was caught (by a
 * handler, say) instead of propagating. Committing such a transaction silently rolls it back, and
 * a consumer that then acknowledged the message would lose it; throwing here makes the runner roll
 * back and the message be redelivered.
 *
 * Free where the COMMIT is checked anyway: kysely, PGlite and tidings' own transactions (a tidings
 * `Database`, a consumer helper's pg Pool) refuse a COMMIT that PostgreSQL answered with ROLLBACK.
 * A pg client whose last reply already said "failed transaction" is refused at once. Any other
 * handle (a pg client whose transaction the caller commits, an ORM's or postgres.js's transaction) is asked with one
 * `SELECT 1`, which an aborted transaction refuses with SQLSTATE 25P02: node-postgres rejects a
 * failed statement before the server's next status arrives, so the status alone cannot tell.
 *
 * @internal Used by `inbox.handle()` after the handler and by the consumer helpers.
 */
export async function requireHealthyTransaction(handle: unknown, executor: Executor, what: string): Promise<void> {
  if (isOrmHandle(handle)) return probe(executor, what); // an ORM's wrapper: only the server can tell
  if (typeof handle !== 'object' || handle === null) return;
  const h = handle as HandleShape & { closed?: unknown; rollback?: unknown };
  if (isMarkedTransaction(handle)) return;
  if (typeof h.getTransactionStatus === 'function' && (h.getTransactionStatus as () => unknown).call(handle) === 'E') {
    throw new TransactionAbortedError(what, 'a statement failed inside it and its error was caught');
  }
  if (typeof h.executeQuery === 'function' && h.isTransaction === true) return; // kysely checks COMMIT
  if (typeof h.rollback === 'function' && typeof h.closed === 'boolean') return; // PGlite checks COMMIT
  return probe(executor, what);
}

/** Asks the server: an aborted transaction refuses even `SELECT 1`, with SQLSTATE 25P02. */
async function probe(executor: Executor, what: string): Promise<void> {
  try {
    await executor.query('SELECT 1');
  } catch (error) {
    if ((error as { code?: unknown } | null)?.code === '25P02') {
      throw new TransactionAbortedError(what, 'a statement failed inside it and its error was caught');
    }
    throw error;
  }
}
