/** What `inPgTransaction` needs of a node-postgres `Pool` and its clients. */
export interface PgTransactionPool<Client extends PgTransactionClient> {
  connect(): Promise<Client>;
}
export interface PgTransactionClient {
  query(text: string): Promise<unknown>;
  release(error?: Error | boolean): void;
}

/**
 * Runs `fn` inside BEGIN … COMMIT on one client of `pool`; rolls back when it throws. A client
 * whose ROLLBACK failed is released as broken, so the pool discards it instead of reusing it.
 */
export async function inPgTransaction<Client extends PgTransactionClient, R>(pool: PgTransactionPool<Client>, fn: (client: Client) => Promise<R>): Promise<R> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch((rollbackError: Error) => {
      broken = rollbackError;
    });
    throw error;
  } finally {
    client.release(broken);
  }
}
