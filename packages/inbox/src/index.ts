/**
 * @tidings/inbox — exactly-once effects for consumers of at-least-once deliveries.
 *
 * A consumer's dedup mark is written in the same transaction as the event's effects, so they
 * commit or roll back together (`inbox(...).handle()`); ordered sources can store their position
 * the same way instead (`saveCheckpoint()` / `loadCheckpoint()`). `migrateInbox()` creates the
 * tables and `cleanupInbox()` applies the retention window.
 *
 * @example
 * import { inbox, migrateInbox } from '@tidings/inbox';
 *
 * await migrateInbox(pgDatabase(process.env.DATABASE_URL!));
 * const billing = inbox({ consumer: 'billing' });
 * await db.transaction().execute((trx) =>
 *   billing.handle(trx, event.eventId, (trx) => createInvoice(trx, event.payload)),
 * );
 */
export { inbox, type HandleResult, type Inbox, type InboxMessage, type InboxOptions } from './inbox.ts';
export type { CheckpointInput } from './checkpoint.ts';
export { cleanupInbox, type CleanupOptions } from './cleanup-inbox.ts';
export { migrateInbox, type MigrateInboxOptions } from './migrate-inbox.ts';
export { CheckpointConflictError, InvalidInputError } from './errors.ts';
export { limits } from './validate.ts';
export {
  ConfigError,
  NotInTransactionError,
  SchemaMissingError,
  TidingsError,
  type Database,
  type Executor,
} from '@tidings/outbox';
