import { ConfigError } from './errors.ts';

const schemaName = /^[a-z_][a-z0-9_]{0,47}$/;

/** Schema names are restricted to plain identifiers, so they can be spliced into SQL safely. */
export function validateSchemaName(schema: string): void {
  if (!schemaName.test(schema)) {
    throw new ConfigError(
      'schema',
      `"${schema}" is not a plain lower-case identifier (letters, digits, underscore; at most 48 characters)`,
    );
  }
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * A subquery giving `drawn`, the last commit number drawn from the schema's counter (`s` quoted):
 * every commit numbered at or below it has either committed, is committing or rolled back.
 */
export function lastDrawnSql(s: string): string {
  return `SELECT CASE WHEN sq.is_called THEN sq.last_value ELSE sq.last_value - 1 END AS drawn FROM ${s}.commit_seq sq`;
}

/** The last commit number drawn in `schema`, as text ('0' before the first). */
export async function lastCommitDrawn(executor: { query<R>(text: string, params?: readonly unknown[]): Promise<{ rows: R[] }> }, schema: string): Promise<string> {
  const { rows } = await executor.query<{ drawn: string | null }>(`SELECT q.drawn::text AS drawn FROM (${lastDrawnSql(quoteIdent(schema))}) q`);
  return rows[0]?.drawn ?? '0';
}
