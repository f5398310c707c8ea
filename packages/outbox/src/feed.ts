import { translatingErrors } from './driver-errors.ts';
import { CursorExpiredError, InvalidCursorError } from './errors.ts';
import { commitOrderFrom, eventColumns, rowToEvent, type EventRow, type OutboxEvent, type Position } from './event.ts';
import type { Executor } from './executor.ts';
import { comparePositions, encodePosition, maxPosition, start } from './position.ts';
import { isMutant } from './mutants.ts';
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
  /**
   * Committed events wait beyond the page because a transaction publishing into one of their
   * partitions is committing at this moment: look again shortly rather than wait for a NOTIFY.
   */
  readonly heldBack: boolean;
}

/**
 * Reads the whole log (all partitions) in one global order, the same for every feed reader: by
 * commit sequence number, then row id. Within a partition numbers are in commit order, so each
 * key's events come in the commit order of their transactions.
 *
 * Numbers are drawn per partition under that partition's lock, so across partitions a smaller
 * number may still be committing while a larger one is visible. The read therefore stops at a
 * horizon below which every number is final: it notes the last number drawn, then which
 * partitions are held by a committer right now (`pg_locks`, readable by every role), and reads,
 * in a later snapshot, up to the smaller of that number and each held partition's last visible
 * commit. A committer holds its lock only while it commits, so the horizon trails by about one
 * commit. A position that retention has already passed throws `CursorExpiredError`.
 */
export async function readFeed(executor: Executor, schema: string, options: FeedReadOptions): Promise<FeedPage> {
  return translatingErrors(schema, () => read(executor, schema, options));
}

async function read(executor: Executor, schema: string, options: FeedReadOptions): Promise<FeedPage> {
  if (isMutant('xid-order')) return readByXid(executor, schema, options);
  const s = quoteIdent(schema);
  const explicit = typeof options.after === 'object' ? options.after : undefined;
  const limit = options.after === 'now' ? 0 : options.limit;
  const drawn = await executor.query<{ drawn: string; held: number[] }>(horizonStatement(schema), [schema]);
  const { drawn: lastDrawn, held } = drawn.rows[0]!;
  if (explicit && BigInt(explicit.seq) > BigInt(lastDrawn) + 1n) throw new InvalidCursorError(encodePosition(explicit), 'ahead');
  const patterns = topicPatterns(options.topics);
  const params: unknown[] = [explicit?.seq ?? '0', explicit?.id ?? '0', limit, patterns ?? null, options.tenant ?? null, lastDrawn, held];
  const { rows } = await executor.query<EventRow & { safe: string; horizon: string | null; held_back: boolean }>(
    `WITH h AS (
       SELECT least($6::bigint, (SELECT min(coalesce((SELECT max(c.seq) FROM ${s}.commits c WHERE c.partition = p), 0))
                                 FROM unnest($7::int[]) AS p)) AS safe
     )
     SELECT h.safe::text AS safe,
            (SELECT rh.seq::text || '-' || rh.id FROM ${s}.retention_horizon rh ORDER BY rh.seq DESC, rh.id DESC LIMIT 1) AS horizon,
            EXISTS (SELECT 1 FROM ${s}.commits c WHERE c.seq > h.safe) AS held_back,
            x.*
     FROM h LEFT JOIN LATERAL (
       SELECT ${eventColumns}
       FROM ${commitOrderFrom(s, {
         commitWhere: 'c.seq >= $1::bigint AND c.seq <= h.safe',
         afterSeq: '$1::bigint',
         afterId: '$2::bigint',
         eventWhere: 'AND ($4::text[] IS NULL OR e.topic LIKE ANY($4::text[])) AND ($5::text IS NULL OR e.tenant = $5)',
         limit: '$3',
       })}
       ORDER BY c.seq, e.id
       LIMIT $3
     ) x ON true`,
    params,
  );
  const first = rows[0]!;
  expired(explicit, first.horizon);
  const past: Position = { seq: (BigInt(first.safe) + 1n).toString(), id: '0' };
  const heldBack = first.held_back;
  if (options.after === 'now') return { events: [], next: past, hasMore: false, heldBack };
  const events = rows.filter((row) => row.event_id !== null).map(rowToEvent);
  const full = events.length === options.limit;
  const next = full ? events.at(-1)!.position : maxPosition(explicit ?? start, past);
  return { events, next, hasMore: full, heldBack };
}

function expired(explicit: Position | undefined, horizon: string | null): void {
  if (!explicit || !horizon) return;
  const [seq, id] = horizon.split('-') as [string, string];
  if (comparePositions(explicit, { seq, id }) < 0) throw new CursorExpiredError(encodePosition(explicit));
}

const horizonStatements = new Map<string, string>();

/**
 * The last number drawn, then the partitions whose commit lock is held: in this order (the lock
 * list is a subquery on the number, so it is read after it), and before the read's own snapshot.
 */
function horizonStatement(schema: string): string {
  let text = horizonStatements.get(schema);
  if (text === undefined) {
    const s = quoteIdent(schema);
    text = `SELECT q.drawn::text AS drawn,
        ARRAY(SELECT l.objid::text::int FROM pg_locks l
              WHERE q.drawn IS NOT NULL AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
                AND l.classid = (hashtext('tidings.commits:' || $1)::bigint & 4294967295)::oid) AS held
      FROM (SELECT CASE WHEN sq.is_called THEN sq.last_value ELSE sq.last_value - 1 END AS drawn FROM ${s}.commit_seq sq) q`;
    horizonStatements.set(schema, text);
  }
  return text;
}

/** Mutant `xid-order`: the whole log in (tx_id, id) order below the visibility watermark. */
async function readByXid(executor: Executor, schema: string, options: FeedReadOptions): Promise<FeedPage> {
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
}
