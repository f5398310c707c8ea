import { NotInTransactionError, transactionVerdict, type Executor } from '@tidings/outbox';
import { translateError } from './schema.ts';

/**
 * Refuses, before anything is written, a handle that is not inside a transaction block: a write
 * there would commit on its own, and a dedup mark committed without its effects loses the event.
 *
 * When the handle cannot tell (a plain Executor, PGlite, a `Database`), PostgreSQL is asked with
 * `LOCK TABLE … IN ROW EXCLUSIVE MODE`: the server rejects LOCK outside a transaction block with
 * SQLSTATE 25P01, and inside one it takes exactly the lock the following INSERT takes anyway (held
 * to the end of the transaction either way), so the probe changes nothing else. One round trip, no
 * subtransaction.
 */
export async function requireTransaction(
  handle: unknown,
  executor: Executor,
  what: string,
  schema: string,
  table: string,
): Promise<void> {
  const verdict = transactionVerdict(handle);
  if (verdict === 'inside') return;
  if (verdict === 'outside') throw new NotInTransactionError(what);
  try {
    await executor.query(`LOCK TABLE ${table} IN ROW EXCLUSIVE MODE`);
  } catch (error) {
    if ((error as { code?: unknown } | null)?.code === '25P01') throw new NotInTransactionError(what);
    throw translateError(error, schema);
  }
}
