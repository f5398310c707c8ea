import { SchemaMissingError } from './errors.ts';

/**
 * The one place database driver errors become tidings errors. A missing table or schema means the
 * migrations have not run; everything else passes through unchanged (with its SQLSTATE `code`).
 */
export function translateDriverError(error: unknown, schema: string): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === '42P01' || code === '3F000') return new SchemaMissingError(schema, { cause: error });
  return error;
}

/** Runs `fn`, translating what the driver throws. */
export async function translatingErrors<T>(schema: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw translateDriverError(error, schema);
  }
}
