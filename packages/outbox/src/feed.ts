import { readFeedPage } from '#feed-page';
import { translatingErrors } from './driver-errors.ts';
import type { OutboxEvent, Position } from './event.ts';
import type { Executor } from './executor.ts';

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
  return translatingErrors(schema, () => readFeedPage(executor, schema, options));
}
