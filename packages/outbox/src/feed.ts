import { translatingErrors } from './driver-errors.ts';
import { CursorExpiredError } from './errors.ts';
import { eventColumns, rowToEvent, type EventRow, type OutboxEvent, type Position } from './event.ts';
import type { Executor } from './executor.ts';
import { comparePositions, encodePosition, maxPosition, start } from './position.ts';
import { topicPatterns } from './read.ts';
import { quoteIdent } from './sql.ts';

export interface FeedReadOptions {
  /**
   * Where to read from: a position (events strictly after it), `'start'` (the oldest event still
   * kept) or `'now'` (only events committed from now on).
   */
  readonly after: Position | 'start' | 'now';
  readonly limit: number;
  /** Topic patterns: exact names or prefixes ending in `*`. Absent: every topic. */
  readonly topics?: readonly string[] | undefined;
  /** Only this tenant's events. Absent: every event, with or without a tenant. */
  readonly tenant?: string | undefined;
}

export interface FeedPage {
  readonly events: OutboxEvent[];
  /** Where the next read continues; hand it back as `after`. */
  readonly next: Position;
  /** True when the page was full, so more events are waiting now. */
  readonly hasMore: boolean;
}

/**
 * Reads the whole log (all partitions) in its one global order, below the visibility watermark:
 * the order every feed reader sees, the same for all of them. A position that retention has
 * already passed throws `CursorExpiredError`, because events after it are gone.
 */
export async function readFeed(executor: Executor, schema: string, options: FeedReadOptions): Promise<FeedPage> {
  const s = quoteIdent(schema);
  const patterns = topicPatterns(options.topics);
  const explicit = typeof options.after === 'object' ? options.after : undefined;
  const limit = options.after === 'now' ? 0 : options.limit;
  const params: unknown[] = [explicit?.txId ?? '0', explicit?.id ?? '0', limit, patterns ?? null, options.tenant ?? null];
  const { rows } = await translatingErrors(schema, () =>
    executor.query<EventRow & { watermark: string; horizon: string | null }>(
      `WITH w AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
       SELECT w.xmin::text AS watermark,
              (SELECT rh.tx_id::text || '-' || rh.id FROM ${s}.retention_horizon rh ORDER BY rh.tx_id DESC, rh.id DESC LIMIT 1) AS horizon,
              ${eventColumns}
       FROM w LEFT JOIN LATERAL (
         SELECT * FROM ${s}.events e
         WHERE (e.tx_id, e.id) > ($1::xid8, $2::bigint) AND e.tx_id < w.xmin
           AND ($4::text[] IS NULL OR e.topic LIKE ANY($4::text[]))
           AND ($5::text IS NULL OR e.tenant = $5)
         ORDER BY e.tx_id, e.id
         LIMIT $3
       ) e ON true`,
      params,
    ),
  );
  const first = rows[0]!;
  if (explicit && first.horizon) {
    const [txId, id] = first.horizon.split('-') as [string, string];
    if (comparePositions(explicit, { txId, id }) < 0) throw new CursorExpiredError(encodePosition(explicit));
  }
  const watermarkPosition: Position = { txId: first.watermark, id: '0' };
  if (options.after === 'now') return { events: [], next: watermarkPosition, hasMore: false };
  const events = rows.filter((row) => row.event_id !== null).map(rowToEvent);
  const full = events.length === options.limit;
  const next = full ? events.at(-1)!.position : maxPosition(explicit ?? start, watermarkPosition);
  return { events, next, hasMore: full };
}
