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
