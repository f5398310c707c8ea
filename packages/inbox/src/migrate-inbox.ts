import { type Database, type MigrationResult } from '@tidings/outbox';
import { applyMigrations } from '@tidings/outbox/internal';
import { resolveSchema } from './schema.ts';

export interface MigrateInboxOptions {
  /** Schema to create the inbox tables in; it may be the outbox's. Default `tidings`. */
  readonly schema?: string;
}

/**
 * Creates or upgrades the inbox tables (`inbox`, `checkpoints`). Each migration file runs once, in
 * its own transaction with its version row (component `inbox`), under an advisory lock: running it
 * again, or from several processes at once, is a no-op.
 *
 * @example
 * const db = pgDatabase(process.env.DATABASE_URL!);
 * await migrateInbox(db);
 */
export async function migrateInbox(db: Database, options: MigrateInboxOptions = {}): Promise<MigrationResult> {
  const schema = resolveSchema(options.schema);
  return applyMigrations(db, schema, { component: 'inbox', folder: new URL('../migrations/', import.meta.url) });
}
