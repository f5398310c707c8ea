import { eventColumns, rowToEvent, type EventRow, type Position } from '../../src/event.ts';
import type * as real from '../../src/feed-page.ts';
import { maxPosition, start } from '../../src/position.ts';
import { topicPatterns } from '../../src/read.ts';
import { quoteIdent } from '../../src/sql.ts';

/** Mutant `xid-order`: the whole log in (tx_id, id) order below the visibility watermark. */
export const readFeedPage: typeof real.readFeedPage = async (executor, schema, options) => {
  const s = quoteIdent(schema);
  const patterns = topicPatterns(options.topics);
  const explicit = typeof options.after === 'object' ? options.after : undefined;
  const limit = options.after === 'now' ? 0 : options.limit;
  const { rows } = await executor.query<EventRow & { watermark: string }>(
    `WITH w AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
     SELECT w.xmin::text AS watermark, x.*
     FROM w LEFT JOIN LATERAL (
       SELECT ${eventColumns.replace('c.seq::text AS seq', 'e.tx_id::text AS seq')} FROM ${s}.events e
       WHERE (e.tx_id, e.id) > ($1::text::xid8, $2::bigint) AND e.tx_id < w.xmin
         AND ($4::text[] IS NULL OR e.topic LIKE ANY($4::text[]))
         AND ($5::text IS NULL OR e.tenant = $5)
       ORDER BY e.tx_id, e.id
       LIMIT $3
     ) x ON true`,
    [explicit?.seq ?? '0', explicit?.id ?? '0', limit, patterns ?? null, options.tenant ?? null],
  );
  const past: Position = { seq: rows[0]!.watermark, id: '0' };
  if (options.after === 'now') return { events: [], next: past, hasMore: false, heldBack: false };
  const events = rows.filter((row) => row.event_id !== null).map(rowToEvent);
  const full = events.length === options.limit;
  return { events, next: full ? events.at(-1)!.position : maxPosition(explicit ?? start, past), hasMore: full, heldBack: !full };
};
