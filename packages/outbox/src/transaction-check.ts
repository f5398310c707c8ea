/**
 * What the handle itself can tell, without a round trip, about whether it is inside a transaction
 * block. Only answers that are certain are given; anything else is asked of the server.
 */
export type TransactionVerdict = 'inside' | 'outside' | 'ask-server';

interface HandleShape {
  executeQuery?: unknown;
  isTransaction?: unknown;
  getTransactionStatus?: unknown;
  totalCount?: unknown;
  release?: unknown;
}

export function transactionVerdict(handle: unknown): TransactionVerdict {
  if (typeof handle !== 'object' || handle === null) return 'ask-server';
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
