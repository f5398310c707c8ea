import { requireCommitted } from '#commit-check';
import { forgetMark, markTransaction } from './transaction-check.ts';

/** What `inPgTransaction` needs of a node-postgres `Pool` and its clients. */
export interface PgTransactionPool<Client extends PgTransactionClient> {
  connect(): Promise<Client>;
}
export interface PgTransactionClient {
  query(text: string): Promise<unknown>;
  release(error?: Error | boolean): void;
  on?(event: 'error', listener: (error: Error) => void): unknown;
  off?(event: 'error', listener: (error: Error) => void): unknown;
}

/**
 * A pool watches only its idle clients: a connection that breaks while a client is checked out
 * emits 'error' on that client, which crashes the process if nobody listens. The statement in
 * flight rejects anyway, so the event itself needs no handling.
 */
const ignoreClientError = (): void => {};

/**
 * Runs `fn` inside BEGIN … COMMIT on one client of `pool`; rolls back when it throws. A client
 * whose ROLLBACK failed is released as broken, so the pool discards it instead of reusing it.
 *
 * A COMMIT that PostgreSQL completed with the tag `ROLLBACK` (the transaction had been aborted by
 * a failed statement whose error `fn` caught) rejects with `TransactionAbortedError`: node-postgres
 * reports it as a success, and acknowledging it would lose the work.
 */
export async function inPgTransaction<Client extends PgTransactionClient, R>(pool: PgTransactionPool<Client>, fn: (client: Client) => Promise<R>): Promise<R> {
  const client = await pool.connect();
  client.on?.('error', ignoreClientError);
  const release = (error?: Error | boolean): void => {
    client.off?.('error', ignoreClientError);
    client.release(error);
  };
  let broken: Error | undefined;
  let result: R;
  try {
    await client.query('BEGIN');
    // Whatever runs inside knows that this COMMIT is checked (see requireHealthyTransaction).
    result = await fn(markTransaction(client));
  } catch (error) {
    forgetMark(client);
    await client.query('ROLLBACK').catch((rollbackError: Error) => {
      broken = rollbackError;
    });
    release(broken);
    throw error;
  }
  forgetMark(client);
  let tag: unknown;
  try {
    tag = commandTag(await client.query('COMMIT'));
  } catch (error) {
    // PostgreSQL refused the COMMIT (a deferred constraint, a serialization failure): the session
    // is fine and the transaction is over. Anything else broke the connection: its outcome is
    // unknown, and the client is discarded.
    const refused = typeof (error as { code?: unknown } | null)?.code === 'string';
    release(refused ? undefined : error instanceof Error ? error : true);
    throw error;
  }
  release();
  requireCommitted(tag);
  return result;
}

/** The command tag of a node-postgres result (`COMMIT`, or `ROLLBACK` for an aborted transaction). */
export function commandTag(result: unknown): unknown {
  return typeof result === 'object' && result !== null ? (result as { command?: unknown }).command : undefined;
}
