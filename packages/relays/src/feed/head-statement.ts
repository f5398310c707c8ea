import type { Executor } from '@tidings/outbox';
import type { HeadReading } from './cursor.ts';

/** The visibility watermark and the next transaction id, from one snapshot. */
const statement = `SELECT pg_snapshot_xmin(s)::text AS xmin, pg_snapshot_xmax(s)::text AS xmax FROM pg_current_snapshot() s`;

/** Reads where the log's head stands now (see `LogHead`). */
export async function readHead(executor: Executor): Promise<HeadReading> {
  const { rows } = await executor.query<{ xmin: string; xmax: string }>(statement);
  const row = rows[0]!;
  return { visible: { txId: row.xmin, id: '0' }, nextTxId: row.xmax };
}
