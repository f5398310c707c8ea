import { SchemaMissingError, type Executor } from '@tidings/outbox';
import { quoteIdent, resolveSchema } from '@tidings/outbox/internal';

/** The relays that have cursors in the schema (every relay that has ever started), by name. */
export async function relayNames(db: Executor, schema: string | undefined): Promise<string[]> {
  const name = resolveSchema(schema);
  try {
    const { rows } = await db.query<{ relay: string }>(`SELECT DISTINCT relay FROM ${quoteIdent(name)}.relay_partitions ORDER BY relay`);
    return rows.map((row) => row.relay);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === '42P01' || code === '3F000') throw new SchemaMissingError(name, { cause: error });
    throw error;
  }
}
