import { translatingErrors } from './driver-errors.ts';
import { commitOrderFrom, eventColumns, rowToEvent, type EventRow, type OutboxEvent, type Position } from './event.ts';
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
  /**
   * How far the read has looked: when the page is full, the last event; otherwise past every
   * commit of the partition visible now, so a cursor can move past events that the topic filter
   * left out.
   */
  readonly scannedTo: Position;
}

/**
 * Reads one partition of the log after a cursor, in commit order: by the commit sequence number
 * each transaction got at COMMIT under its partition's lock, then by row id, in one statement.
 * Once a number is visible, every smaller number of the partition is final (the committer held the
 * lock until it was visible), so no watermark is needed and no long transaction holds a read back.
 */
export async function readPartition(executor: Executor, schema: string, options: ReadOptions): Promise<ReadResult> {
  const patterns = topicPatterns(options.topics);
  const params: unknown[] = [options.partition, options.after.seq, options.after.id, options.limit];
  if (patterns) params.push(patterns);
  if (options.tenant !== undefined) params.push(options.tenant);
  const text = readStatement(schema, patterns !== undefined, options.tenant !== undefined);
  const { rows } = await translatingErrors(schema, () => executor.query<EventRow & { head: string | null }>(text, params));
  const head = rows[0]!.head;
  const events = rows.filter((row) => row.event_id !== null).map(rowToEvent);
  const last = events.at(-1)?.position;
  if (events.length === options.limit && last) return { events, scannedTo: last };
  if (isMutant('id-cursor')) return { events, scannedTo: last ?? options.after };
  // head is the last commit visible, or (xid-order mutant) the watermark, both final.
  const past: Position = head === null ? options.after : isMutant('xid-order') ? { seq: head, id: '0' } : { seq: (BigInt(head) + 1n).toString(), id: '0' };
  return { events, scannedTo: maxPosition(options.after, past) };
}

const readStatements = new Map<string, string>();

function readStatement(schema: string, byTopic: boolean, byTenant: boolean): string {
  const cacheKey = `${schema}:${byTopic}:${byTenant}`;
  let text = readStatements.get(cacheKey);
  if (text) return text;
  const s = quoteIdent(schema);
  const filters = `${byTopic ? 'AND e.topic LIKE ANY($5::text[])' : ''} ${byTenant ? `AND e.tenant = $${byTopic ? 6 : 5}` : ''}`;
  text = isMutant('xid-order') ? xidOrderStatement(s, filters) : isMutant('id-cursor') ? idOrderStatement(s, filters) : commitOrderStatement(s, filters);
  readStatements.set(cacheKey, text);
  return text;
}

function commitOrderStatement(s: string, filters: string): string {
  const from = commitOrderFrom(s, {
    commitWhere: 'c.partition = $1 AND c.seq >= $2::bigint',
    afterSeq: '$2::bigint',
    afterId: '$3::bigint',
    eventWhere: filters,
    limit: '$4',
  });
  return `SELECT h.head::text AS head, x.*
    FROM (SELECT max(seq) AS head FROM ${s}.commits WHERE partition = $1) h
    LEFT JOIN LATERAL (
      SELECT ${eventColumns}
      FROM ${from}
      ORDER BY c.seq, e.id
      LIMIT $4
    ) x ON true`;
}

/**
 * Mutant `xid-order`: the log as it was read before commit sequencing, in (tx_id, id) order below
 * the visibility watermark: first-write order, not commit order.
 */
function xidOrderStatement(s: string, filters: string): string {
  return `SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS head, x.*
    FROM (SELECT 1) one LEFT JOIN LATERAL (
      SELECT ${eventColumns.replace('c.seq::text AS seq', 'e.tx_id::text AS seq')}
      FROM ${s}.events e
      WHERE e.partition = $1 AND (e.tx_id, e.id) > ($2::text::xid8, $3::bigint) AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot()) ${filters}
      ORDER BY e.tx_id, e.id
      LIMIT $4
    ) x ON true`;
}

/** Mutant `id-cursor`: `id > cursor` with nothing to tell a gap from a late commit. */
function idOrderStatement(s: string, filters: string): string {
  return `SELECT NULL::text AS head, x.*
    FROM (SELECT 1) one LEFT JOIN LATERAL (
      SELECT ${eventColumns.replace('c.seq::text AS seq', "'0' AS seq")}
      FROM ${s}.events e
      WHERE e.partition = $1 AND e.id > $3::bigint AND $2::bigint IS NOT NULL ${filters}
      ORDER BY e.id
      LIMIT $4
    ) x ON true`;
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
