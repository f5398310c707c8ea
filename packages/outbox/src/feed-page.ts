import { CursorExpiredError, InvalidCursorError } from './errors.ts';
import { commitOrderFrom, eventColumns, rowToEvent, type EventRow, type Position } from './event.ts';
import type { Executor } from './executor.ts';
import type { FeedPage, FeedReadOptions } from './feed.ts';
import { comparePositions, encodePosition, maxPosition, start } from './position.ts';
import { topicPatterns } from './read.ts';
import { lastDrawnSql, quoteIdent } from './sql.ts';

/**
 * One page of the feed, read as `readFeed` describes: up to the horizon below which every commit
 * number is final.
 *
 * Imported as `#feed-page` (see package.json `imports`), the module a test mutant replaces.
 */
export async function readFeedPage(executor: Executor, schema: string, options: FeedReadOptions): Promise<FeedPage> {
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
      FROM (${lastDrawnSql(s)}) q`;
    horizonStatements.set(schema, text);
  }
  return text;
}
