import { TransactionAbortedError } from '@tidings/outbox';

/**
 * Whether a consumer's transaction failed because its handler caught a database error and carried
 * on: the transaction was aborted, so PostgreSQL answered its COMMIT with ROLLBACK
 * (`TransactionAbortedError`) or refused the statement tidings ran after the handler (SQLSTATE
 * 25P02, "current transaction is aborted"). tidings never swallows an error of its own statements,
 * so such a failure is the handler's and counts as a failed attempt, like a throw.
 */
export function abortedByHandler(error: unknown): boolean {
  return error instanceof TransactionAbortedError || (error as { code?: unknown } | null)?.code === '25P02';
}
