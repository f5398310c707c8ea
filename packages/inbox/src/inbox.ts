import { requireHealthyTransaction, requireTransaction, toExecutor } from '@tidings/outbox';
import { loadCheckpoint, saveCheckpoint, type CheckpointInput } from './checkpoint.ts';
import { InvalidInputError } from './errors.ts';
import { markReceived } from './mark-received.ts';
import { quoteIdent, resolveSchema, translateError } from './schema.ts';
import { limits, validConsumer, validText } from './validate.ts';

export interface InboxOptions {
  /**
   * Name of the consuming component, e.g. `billing.order-created`. Each consumer keeps its own
   * dedup marks and checkpoints, so two consumers of one event both apply it once.
   */
  readonly consumer: string;
  /** Schema the inbox was migrated into. Default `tidings`. */
  readonly schema?: string;
}

/** An event id, or anything that carries one (an `OutboxEvent`, a decoded transport message). */
export type InboxMessage = string | { readonly eventId: string };

/** What `handle()` did: ran the handler (and returns its result), or skipped a duplicate. */
export type HandleResult<T> = { readonly applied: true; readonly result: T } | { readonly applied: false };

/** One consumer's inbox: exactly-once effects for deduplicated events, and checkpoints for ordered sources. */
export interface Inbox {
  readonly consumer: string;
  readonly schema: string;

  /**
   * Applies an event at most once per consumer, inside the caller's transaction.
   *
   * Writes the dedup mark (consumer, eventId) and, only when it is new, runs `handler` with the
   * same transaction; the mark and the handler's effects commit or roll back together. A duplicate
   * resolves to `{ applied: false }` without calling the handler. If a concurrent transaction is
   * applying the same event, this call waits until it ends: skips when it committed, applies when
   * it rolled back. (Under REPEATABLE READ or SERIALIZABLE the wait ends in a serialization failure,
   * SQLSTATE 40001, instead of a skip: retry the transaction as usual.)
   *
   * `trx` is a kysely `Transaction`, a pg `Client`/`PoolClient` after BEGIN, or an `Executor` of an
   * open transaction; anything else is refused with `NotInTransactionError` before a write. If the
   * handler throws, the error propagates and the transaction must be rolled back (kysely's
   * `transaction().execute()` does) — committing it anyway would keep the mark without the effects.
   * A handler that catches a database error and returns leaves the transaction aborted; `handle()`
   * then rejects with `TransactionAbortedError` instead of reporting the event as applied.
   *
   * @example
   * await db.transaction().execute((trx) =>
   *   billing.handle(trx, message.eventId, async (trx) => {
   *     await trx.insertInto('invoices').values({ order_id: message.payload.orderId }).execute();
   *   }),
   * );
   */
  handle<Trx, T>(trx: Trx, message: InboxMessage, handler: (trx: Trx) => T | Promise<T>): Promise<HandleResult<T>>;

  /**
   * Stores how far an ordered source has been applied, inside the caller's transaction, so the
   * position and the effects commit together; on restart, resume from `loadCheckpoint()`.
   * With `expected`, it is a compare-and-set that throws `CheckpointConflictError` when another
   * worker moved the checkpoint first.
   *
   * @example
   * await db.transaction().execute(async (trx) => {
   *   await applyRecords(trx, batch);
   *   await billing.saveCheckpoint(trx, { source: `orders/${partition}`, position: String(next), expected: String(from) });
   * });
   */
  saveCheckpoint(trx: unknown, checkpoint: CheckpointInput): Promise<void>;

  /**
   * The position last saved for `source`, or null when there is none. Works on any handle (a
   * `Database`, a pool, a kysely instance or a transaction).
   *
   * @example
   * const from = await billing.loadCheckpoint(db, `orders/${partition}`);
   * consumer.seek({ topic: 'orders', partition, offset: from ?? '0' });
   */
  loadCheckpoint(db: unknown, source: string): Promise<string | null>;
}

/**
 * Creates the inbox of one consumer. Cheap and immutable: create it once and share it.
 *
 * @example
 * const billing = inbox({ consumer: 'billing' });
 * const outcome = await db.transaction().execute((trx) =>
 *   billing.handle(trx, event, (trx) => createInvoice(trx, event.payload)),
 * );
 * if (!outcome.applied) log.debug('duplicate delivery skipped', event.eventId);
 */
export function inbox(options: InboxOptions): Inbox {
  const consumer = validConsumer((options as Partial<InboxOptions> | undefined)?.consumer);
  const schema = resolveSchema(options.schema);
  const table = `${quoteIdent(schema)}.inbox`;

  return Object.freeze({
    consumer,
    schema,
    async handle<Trx, T>(trx: Trx, message: InboxMessage, handler: (trx: Trx) => T | Promise<T>): Promise<HandleResult<T>> {
      const eventId = validText('eventId', eventIdOf(message), limits.eventId);
      if (typeof handler !== 'function') throw new InvalidInputError('handler', `must be a function; got ${typeof handler}`);
      const executor = toExecutor(trx);
      await requireTransaction(trx, executor, 'inbox.handle()', table, (error) => translateError(error, schema));
      if (!(await markReceived(executor, schema, consumer, eventId))) return { applied: false };
      const result = await handler(trx);
      // A handler that caught a database error left the transaction aborted: its COMMIT would
      // silently roll back the effects and the mark, and the caller would acknowledge a loss.
      await requireHealthyTransaction(trx, executor, 'inbox.handle()');
      return { applied: true, result };
    },
    saveCheckpoint(trx: unknown, checkpoint: CheckpointInput): Promise<void> {
      return saveCheckpoint(trx, schema, consumer, checkpoint);
    },
    loadCheckpoint(db: unknown, source: string): Promise<string | null> {
      return loadCheckpoint(db, schema, consumer, source);
    },
  });
}

function eventIdOf(message: InboxMessage): unknown {
  if (typeof message === 'object' && message !== null) return (message as { eventId?: unknown }).eventId;
  return message;
}
