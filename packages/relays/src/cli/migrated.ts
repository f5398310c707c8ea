import { TidingsError, type Executor } from '@tidings/outbox';
import { quoteIdent, resolveSchema } from '@tidings/outbox/internal';

/** The database has not been migrated (or not for webhooks): `tidings migrate` is the fix. */
export class NotMigratedError extends TidingsError {
  override readonly name = 'NotMigratedError';
  readonly schema: string;
  constructor(schema: string, where: string, what: string) {
    super(`the ${what} tables in schema "${schema}" of ${where} are missing: run \`tidings migrate\` (with the same --database and --schema) first`);
    this.schema = schema;
  }
}

/** Checks, before anything starts, that the outbox (and, when asked, the webhook registry) is migrated. */
export async function requireMigrated(db: Executor, schema: string | undefined, where: string, webhooks: boolean): Promise<void> {
  const name = resolveSchema(schema);
  const s = quoteIdent(name);
  const probes: Array<[string, string]> = [[`SELECT partitions FROM ${s}.settings LIMIT 1`, 'tidings']];
  if (webhooks) probes.push([`SELECT digest FROM ${s}.webhook_secrets LIMIT 0`, 'webhook']);
  for (const [sql, what] of probes) {
    try {
      await db.query(sql);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === '42P01' || code === '3F000' || code === '42703') throw new NotMigratedError(name, where, what);
      throw error;
    }
  }
}
