import type { Database, MigrationResult } from '@tidings/outbox';
import { applyMigrations, quoteIdent, resolveSchema, translateDriverError } from '@tidings/outbox/internal';
import { countPlaintextSecrets, sealPlaintextSecrets } from './sealed-secrets.ts';
import { MissingSecretKeyError } from './secret-errors.ts';
import { secretKeyringFromEnv, type SecretKeyring } from './secret-keyring.ts';

export interface MigrateWebhooksOptions {
  /** The schema the outbox was migrated into. Default `tidings`. */
  readonly schema?: string;
  /**
   * Encrypts secrets stored in plaintext by an older version. Default: the keys in
   * `TIDINGS_SECRET_KEY` / `TIDINGS_SECRET_KEY_OLD`. Needed only when such secrets exist.
   */
  readonly keyring?: SecretKeyring;
}

/**
 * Creates or upgrades the webhook endpoint registry (`webhook_endpoints`, `webhook_secrets`) in
 * the outbox's schema. Each migration runs once, in its own transaction with its version row
 * (component `webhook`), under an advisory lock: running it again, or from many processes, is a no-op.
 * Signing secrets left in plaintext by a version before encryption at rest are then encrypted
 * under the keyring's current key; if there are any and no key is set, it throws
 * `MissingSecretKeyError` (the tables are migrated; run it again with a key).
 *
 * @example
 * const db = pgDatabase(process.env.DATABASE_URL!);
 * await migrate(db);
 * await migrateWebhooks(db);
 */
export async function migrateWebhooks(db: Database, options: MigrateWebhooksOptions = {}): Promise<MigrationResult & { readonly encryptedSecrets: number }> {
  const schema = resolveSchema(options.schema);
  const result = await applyMigrations(db, schema, {
    component: 'webhook',
    folder: new URL('../../migrations/webhook/', import.meta.url),
  });
  const plaintext = await countPlaintextSecrets(db, schema);
  if (plaintext === 0) return { ...result, encryptedSecrets: 0 };
  const keyring = options.keyring ?? secretKeyringFromEnv();
  if (!keyring) throw new MissingSecretKeyError(`encrypt the ${plaintext} webhook signing secrets stored in plaintext by an older version`);
  return { ...result, encryptedSecrets: await sealPlaintextSecrets(db, schema, keyring) };
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

/** The outbox's driver-error translation, naming the webhook registry's tables and what creates them. */
export function translateError(error: unknown, schema: string): unknown {
  return translateDriverError(error, schema, { tables: 'webhook', fix: 'migrate() and migrateWebhooks()' });
}
