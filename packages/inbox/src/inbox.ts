import { BeyondHorizonError, ConfigError, defaultRedeliveryHorizonMs, type TransactionHandle } from '@tidings/outbox';
import { attributes, instruments, requireHealthyTransaction, requireTransaction, toExecutor } from '@tidings/outbox/internal';
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
  /**
   * The redelivery horizon: how long this consumer's dedup marks are kept (pass the same value to
   * `cleanupInbox` as `retentionMs`), and so how long after an event was written a redelivery of
   * it is still recognised. Senders refuse to redeliver beyond it (`retryDeadLetters`, `replay`).
   * Default `defaultRedeliveryHorizonMs`, 7 days, on both sides.
   */
  readonly horizonMs?: number;
  /**
   * What `handle()` does with an event written before the horizon that it has no mark for: it may
   * be a first delivery (a relay that was stopped for longer) or a redelivery whose mark was
   * already deleted. `'apply'` (default) applies it and says so with `beyondHorizon: true` in the
   * result; `'refuse'` throws `BeyondHorizonError` before writing anything.
   */
  readonly beyondHorizon?: 'apply' | 'refuse';
}

/**
 * An event id, or anything that carries one (an `OutboxEvent`, a decoded transport message). When
 * it also carries `createdAt`, events older than the redelivery horizon are recognised.
 */
export type InboxMessage = string | { readonly eventId: string; readonly createdAt?: Date | string | null };

/**
 * What `handle()` did: ran the handler (and returns its result), or skipped a duplicate.
 * `beyondHorizon` is set when the applied event was written before the redelivery horizon.
 */
export type HandleResult<T> = { readonly applied: true; readonly result: T; readonly beyondHorizon?: true } | { readonly applied: false };

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
   * `trx` is a `TransactionHandle` inside an open transaction: a kysely `Transaction`, a pg
   * `Client`/`PoolClient` after BEGIN, an `Executor`, or the transaction of Drizzle, Prisma, TypeORM,
   * MikroORM or postgres.js; one outside a transaction is refused with `NotInTransactionError`
   * before a write. The handler receives the same handle. If the
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
  handle<Trx extends TransactionHandle, T>(trx: Trx, message: InboxMessage, handler: (trx: Trx) => T | Promise<T>): Promise<HandleResult<T>>;

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
  saveCheckpoint(trx: TransactionHandle, checkpoint: CheckpointInput): Promise<void>;

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
  const horizonMs = horizonOption(options.horizonMs);
  const refuseBeyond = beyondOption(options.beyondHorizon) === 'refuse';
  const labels = attributes({ consumer });

  return Object.freeze({
    consumer,
    schema,
    async handle<Trx extends TransactionHandle, T>(trx: Trx, message: InboxMessage, handler: (trx: Trx) => T | Promise<T>): Promise<HandleResult<T>> {
      const eventId = validText('eventId', eventIdOf(message), limits.eventId);
      if (typeof handler !== 'function') throw new InvalidInputError('handler', `must be a function; got ${typeof handler}`);
      const executor = toExecutor(trx, 'trx');
      await requireTransaction(trx, executor, 'inbox.handle()', table, (error) => translateError(error, schema));
      const written = createdAtOf(message);
      const beyond = written !== undefined && Date.now() - written.getTime() > horizonMs;
      if (beyond && refuseBeyond) throw new BeyondHorizonError(`inbox "${consumer}" handling event ${eventId}`, written, horizonMs);
      if (!(await markReceived(executor, schema, consumer, eventId))) {
        instruments().inboxDuplicates.add(1, labels);
        return { applied: false };
      }
      const result = await handler(trx);
      // A handler that caught a database error left the transaction aborted: its COMMIT would
      // silently roll back the effects and the mark, and the caller would acknowledge a loss.
      await requireHealthyTransaction(trx, executor, 'inbox.handle()');
      return beyond ? { applied: true, result, beyondHorizon: true } : { applied: true, result };
    },
    saveCheckpoint(trx: TransactionHandle, checkpoint: CheckpointInput): Promise<void> {
      return saveCheckpoint(trx, schema, consumer, checkpoint);
    },
    loadCheckpoint(db: unknown, source: string): Promise<string | null> {
      return loadCheckpoint(db, schema, consumer, source);
    },
  });
}

function horizonOption(value: unknown): number {
  if (value === undefined) return defaultRedeliveryHorizonMs;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new ConfigError('horizonMs', `expected a whole number of milliseconds above 0, got ${String(value)}`);
  }
  return value;
}

function beyondOption(value: unknown): 'apply' | 'refuse' {
  if (value === undefined || value === 'apply' || value === 'refuse') return value ?? 'apply';
  throw new ConfigError('beyondHorizon', `expected 'apply' or 'refuse', got ${JSON.stringify(value)}`);
}

/** When the event was written, if the message says so and it is a valid time. */
function createdAtOf(message: InboxMessage): Date | undefined {
  if (typeof message !== 'object' || message === null) return undefined;
  const value = (message as { createdAt?: unknown }).createdAt;
  if (value === undefined || value === null) return undefined;
  const date = value instanceof Date ? value : typeof value === 'string' ? new Date(value) : undefined;
  return date && !Number.isNaN(date.getTime()) ? date : undefined;
}

function eventIdOf(message: InboxMessage): unknown {
  if (typeof message === 'object' && message !== null) return (message as { eventId?: unknown }).eventId;
  return message;
}
