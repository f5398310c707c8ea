import { applyMigrations, quoteIdent, resolveSchema, SchemaMissingError, type Database, type MigrationResult } from '@tidings/outbox';

export interface MigrateWebhooksOptions {
  /** The schema the outbox was migrated into. Default `tidings`. */
  readonly schema?: string;
}

/**
 * Creates or upgrades the webhook endpoint registry (`webhook_endpoints`, `webhook_secrets`) in
 * the outbox's schema. Each migration runs once, in its own transaction with its version row
 * (component `webhook`), under an advisory lock: running it again, or from many processes, is a no-op.
 *
 * @example
 * const db = pgDatabase(process.env.DATABASE_URL!);
 * await migrate(db);
 * await migrateWebhooks(db);
 */
export async function migrateWebhooks(db: Database, options: MigrateWebhooksOptions = {}): Promise<MigrationResult> {
  return applyMigrations(db, resolveSchema(options.schema), {
    component: 'webhook',
    folder: new URL('../../migrations/webhook/', import.meta.url),
  });
}

/** The NOTIFY channel that tells dispatchers an endpoint changed: a plain identifier. */
export function webhookChannel(schema: string): string {
  return `${schema}_webhooks`;
}

/** Quoted names of the registry's tables in `schema`. */
export function webhookTables(schema: string): { readonly s: string; readonly endpoints: string; readonly secrets: string } {
  const s = quoteIdent(schema);
  return { s, endpoints: `${s}.webhook_endpoints`, secrets: `${s}.webhook_secrets` };
}

/** The one place driver errors are translated: a missing table means "run migrateWebhooks()". */
export function translateError(error: unknown, schema: string): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === '42P01' || code === '3F000') {
    return new SchemaMissingError(schema, { cause: error, tables: 'webhook', fix: 'migrate() and migrateWebhooks()' });
  }
  return error;
}
