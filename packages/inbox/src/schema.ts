import { SchemaMissingError } from '@tidings/outbox';

export { quoteIdent, resolveSchema } from '@tidings/outbox';

/** The one place driver errors are translated: a missing table or schema means "run migrateInbox()". */
export function translateError(error: unknown, schema: string): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === '42P01' || code === '3F000') {
    return new SchemaMissingError(schema, { cause: error, tables: 'inbox', fix: 'migrateInbox()' });
  }
  return error;
}
