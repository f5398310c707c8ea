import { translatingErrors } from './driver-errors.ts';
import { eventColumns, rowToEvent, type EventRow, type OutboxEvent, type Position } from './event.ts';
import type { Executor } from './executor.ts';
import { maxPosition } from './position.ts';
import { isMutant } from './mutants.ts';
import { quoteIdent } from './sql.ts';

export interface ReadOptions {
  readonly partition: number;
  /** Read events strictly after this position. */
  readonly after: Position;
  readonly limit: number;
  /** Topic patterns: exact names, or a prefix ending in `*` (`orders.*`). Absent: every topic. */
  readonly topics?: readonly string[] | undefined;
  /** Only this tenant's events. Absent: every event. */
  readonly tenant?: string | undefined;
}

export interface ReadResult {
  readonly events: OutboxEvent[];
  /** The oldest transaction still running: every row below it is final. */
  readonly watermark: string;
  /**
   * How far the read has looked: when the page is full, the last event; otherwise everything below
   * the watermark, so a cursor can move past events that the topic filter left out.
   */
  readonly scannedTo: Position;
  /**
   * Committed events of this partition wait at or above the watermark: an older transaction is
   * still running (anywhere in the database), and they can be read the moment it ends. Such a
   * transaction need not NOTIFY, so a reader should look again soon rather than wait for a poll.
   */
  readonly heldBack: boolean;
}

/**
 * Reads one partition of the log after a cursor, in `(tx_id, id)` order, below the visibility
 * watermark, in one statement. Rows below the watermark are committed or rolled back for good, and
 * every row written later gets a larger tx_id, so a cursor never skips a late-committing transaction.
 */
export async function readPartition(executor: Executor, schema: string, options: ReadOptions): Promise<ReadResult> {
  const patterns = topicPatterns(options.topics);
  const params: unknown[] = [options.partition, options.after.txId, options.after.id, options.limit];
  if (patterns) params.push(patterns);
  if (options.tenant !== undefined) params.push(options.tenant);
  const text = readStatement(schema, patterns !== undefined, options.tenant !== undefined);
  const { rows } = await translatingErrors(schema, () =>
    executor.query<EventRow & { watermark: string; held_back: boolean }>(text, params),
  );
  const { watermark, held_back: heldBack } = rows[0]!;
  const events = rows.filter((row) => row.event_id !== null).map(rowToEvent);
  const last = events.at(-1)?.position;
  if (isMutant('id-cursor')) return { events, watermark, scannedTo: last ?? options.after, heldBack };
  const scannedTo =
    events.length === options.limit && last ? last : maxPosition(options.after, { txId: watermark, id: '0' });
  return { events, watermark, scannedTo, heldBack };
}

const readStatements = new Map<string, string>();

function readStatement(schema: string, byTopic: boolean, byTenant: boolean): string {
  const cacheKey = `${schema}:${byTopic}:${byTenant}`;
  let text = readStatements.get(cacheKey);
  if (text) return text;
  const order = isMutant('id-cursor')
    ? { after: 'e.id > $3::bigint AND $2::text IS NOT NULL', by: 'e.id' }
    : { after: '(e.tx_id, e.id) > ($2::xid8, $3::bigint) AND e.tx_id < w.xmin', by: 'e.tx_id, e.id' };
  const s = quoteIdent(schema);
  // held_back looks strictly above the watermark: rows at it belong to the oldest running
  // transaction itself, never visible, and there may be very many of them to step over.
  text = `WITH w AS (
      SELECT x.xmin, EXISTS (SELECT 1 FROM ${s}.events h WHERE h.partition = $1 AND h.tx_id > x.xmin) AS held_back
      FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin) x
    )
    SELECT w.xmin::text AS watermark, w.held_back, ${eventColumns}
    FROM w LEFT JOIN LATERAL (
      SELECT * FROM ${s}.events e
      WHERE e.partition = $1 AND ${order.after}
        ${byTopic ? 'AND e.topic LIKE ANY($5::text[])' : ''}
        ${byTenant ? `AND e.tenant = $${byTopic ? 6 : 5}` : ''}
      ORDER BY ${order.by}
      LIMIT $4
    ) e ON true`;
  readStatements.set(cacheKey, text);
  return text;
}

/** Turns `orders.*` into the LIKE pattern `orders.%`, escaping LIKE's own wildcards. */
export function topicPatterns(topics: readonly string[] | undefined): string[] | undefined {
  if (!topics || topics.length === 0) return undefined;
  return topics.map((topic) => {
    const prefix = topic.endsWith('*');
    const literal = (prefix ? topic.slice(0, -1) : topic).replace(/[\\%_]/g, (c) => `\\${c}`);
    return prefix ? `${literal}%` : literal;
  });
}
