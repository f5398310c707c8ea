import { SchemaMissingError } from './errors.ts';

/** Whose tables a statement needs, and what creates them: the outbox's by default. */
export interface MissingTables {
  readonly tables: string;
  readonly fix: string;
}

/**
 * The one place database driver errors become tidings errors, for every package: a missing table
 * or schema means the migrations of `missing` (the outbox's by default) have not run; everything
 * else passes through unchanged (with its SQLSTATE `code`).
 */
export function translateDriverError(error: unknown, schema: string, missing?: MissingTables): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === '42P01' || code === '3F000') return new SchemaMissingError(schema, { cause: error, ...missing });
  return error;
}

/** Runs `fn`, translating what the driver throws. */
export async function translatingErrors<T>(schema: string, fn: () => Promise<T>, missing?: MissingTables): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw translateDriverError(error, schema, missing);
  }
}
