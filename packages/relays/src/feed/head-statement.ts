import { quoteIdent, type Executor } from '@tidings/outbox';
import type { HeadReading } from './cursor.ts';

/** Reads where the log's head stands now (see `LogHead`): the last commit number drawn. */
export async function readHead(executor: Executor, schema: string): Promise<HeadReading> {
  const { rows } = await executor.query<{ last: string | null }>(
    `SELECT (CASE WHEN is_called THEN last_value ELSE last_value - 1 END)::text AS last FROM ${quoteIdent(schema)}.commit_seq`,
  );
  return { lastSeq: rows[0]?.last ?? '0' };
}
