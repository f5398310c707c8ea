import { translatingErrors } from './driver-errors.ts';
import { partitionReadStatement, pastHead } from '#read-statement';
import { rowToEvent, type EventRow, type OutboxEvent, type Position } from './event.ts';
import type { Executor } from './executor.ts';
import { maxPosition } from './position.ts';
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
  /** The page may not reach the end of the log: read again at once (a full page, for one). */
  readonly more: boolean;
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
  if (events.length === options.limit && last) return { events, scannedTo: last, more: true };
  const past: Position = head === null ? options.after : pastHead(head);
  return { events, scannedTo: maxPosition(options.after, past), more: false };
}

const readStatements = new Map<string, string>();

function readStatement(schema: string, byTopic: boolean, byTenant: boolean): string {
  const cacheKey = `${schema}:${byTopic}:${byTenant}`;
  let text = readStatements.get(cacheKey);
  if (text) return text;
  const s = quoteIdent(schema);
  const filters = `${byTopic ? 'AND e.topic LIKE ANY($5::text[])' : ''} ${byTenant ? `AND e.tenant = $${byTopic ? 6 : 5}` : ''}`;
  text = partitionReadStatement(s, filters);
  readStatements.set(cacheKey, text);
  return text;
}

/**
 * The filter of `readPartition` in memory: whether `event` is one of `tenant`'s (when given) and
 * its topic is one of `topics` (exact names, or prefixes ending in `*`; absent: every topic).
 */
export function eventFilter(topics: readonly string[] | undefined, tenant: string | undefined): (event: OutboxEvent) => boolean {
  const exact = new Set(topics?.filter((t) => !t.endsWith('*')));
  const prefixes = topics?.filter((t) => t.endsWith('*')).map((t) => t.slice(0, -1)) ?? [];
  const everyTopic = topics === undefined || topics.length === 0;
  return (event) =>
    (tenant === undefined || event.tenant === tenant) && (everyTopic || exact.has(event.topic) || prefixes.some((prefix) => event.topic.startsWith(prefix)));
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
