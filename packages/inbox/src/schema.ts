import { translateDriverError } from '@tidings/outbox/internal';

export { quoteIdent, resolveSchema } from '@tidings/outbox/internal';

/** The outbox's driver-error translation, naming the inbox's tables and what creates them. */
export function translateError(error: unknown, schema: string): unknown {
  return translateDriverError(error, schema, { tables: 'inbox', fix: 'migrateInbox()' });
}
