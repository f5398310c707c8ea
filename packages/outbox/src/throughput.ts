import { translatingErrors } from './driver-errors.ts';
import { commitOrderFrom, type Position } from './event.ts';
import type { Executor } from './executor.ts';
import { resolveSchema } from './options.ts';
import { matchesFilter, relayFiltersJson, type StatusOptions } from './status.ts';
import { quoteIdent } from './sql.ts';

/**
 * Where the log ended in each partition at one reading: its last visible commit number (index =
 * partition, '0' before the partition's first commit). Within a partition every number at or
 * below a visible one is final, so nothing can later appear below a mark.
 */
export type LogHeads = readonly string[];

/**
 * The events published (committed) after the marks `since`, up to the partitions' heads now, and
 * those heads, the marks of the next call. Without `since` it only takes the marks (0 events).
 * Cheap: one index probe per partition for its head, then the new commits' events, counted up to
 * `limit`. Rolled-back transactions are never counted; events deleted by retention do not lower it.
 */
export async function publishedSince(
  db: Executor,
  options: { readonly schema?: string; readonly since?: LogHeads; readonly limit?: number } = {},
): Promise<{ readonly heads: LogHeads; readonly events: number }> {
  const schema = resolveSchema(options.schema);
  const s = quoteIdent(schema);
  const from = commitOrderFrom(s, {
    commitWhere: 'c.partition = h.partition AND c.seq > h.after AND c.seq <= h.head',
    afterSeq: 'h.after',
    afterId: '0',
    eventWhere: '',
    limit: '$2',
  });
  const { rows } = await translatingErrors(schema, () =>
    db.query<{ heads: string[]; events: number }>(
      `WITH heads AS (
         SELECT p AS partition, coalesce((SELECT max(c.seq) FROM ${s}.commits c WHERE c.partition = p), 0) AS head
         FROM generate_series(0, (SELECT partitions FROM ${s}.settings) - 1) AS p
       ),
       h AS (SELECT partition, head, coalesce(($1::bigint[])[partition + 1], head) AS after FROM heads)
       SELECT (SELECT array_agg(head::text ORDER BY partition) FROM h) AS heads,
              (SELECT count(*) FROM (SELECT 1 FROM h, ${from} LIMIT $2) x)::int AS events`,
      [options.since ?? null, options.limit ?? 1_000_000],
    ),
  );
  return { heads: rows[0]!.heads, events: rows[0]!.events };
}

/** A relay cursor's move in one partition between two readings. */
export interface CursorMove {
  readonly relay: string;
  readonly partition: number;
  readonly from: Position;
  readonly to: Position;
}

/**
 * How many events the relays' cursors passed in these moves (delivered, or set aside as dead
 * letters), each relay counting only what its `filters` entry lets through, as `status()` counts
 * lag. Counting stops at `limit`.
 */
export async function eventsPassed(
  db: Executor,
  moves: readonly CursorMove[],
  options: { readonly schema?: string; readonly filters?: StatusOptions['filters']; readonly limit?: number } = {},
): Promise<number> {
  if (moves.length === 0) return 0;
  const schema = resolveSchema(options.schema);
  const s = quoteIdent(schema);
  const from = commitOrderFrom(s, {
    commitWhere: 'c.partition = m.partition AND c.seq >= m.from_seq AND c.seq <= m.to_seq',
    afterSeq: 'm.from_seq',
    afterId: 'm.from_id',
    eventWhere: `AND (c.seq < m.to_seq OR e.id <= m.to_id) AND ${matchesFilter('f', 'e.topic', 'e.tenant')}`,
    limit: '$3',
  });
  const json = moves.map((m) => ({ relay: m.relay, partition: m.partition, from_seq: m.from.seq, from_id: m.from.id, to_seq: m.to.seq, to_id: m.to.id }));
  const { rows } = await translatingErrors(schema, () =>
    db.query<{ events: number }>(
      `SELECT count(*)::int AS events FROM (
         SELECT 1
         FROM json_to_recordset($1::json) AS m(relay text, partition int, from_seq bigint, from_id bigint, to_seq bigint, to_id bigint)
         LEFT JOIN json_to_recordset($2::json) AS f(relay text, patterns text[], tenant text) ON f.relay = m.relay
         CROSS JOIN ${from}
         LIMIT $3) x`,
      [JSON.stringify(json), relayFiltersJson(options.filters), options.limit ?? 1_000_000],
    ),
  );
  return rows[0]!.events;
}
