import {
  comparePositions,
  CursorExpiredError,
  readFeed,
  type Database,
  type FeedPage,
  type OutboxEvent,
  type Position,
} from '@tidings/outbox';
import { setTimeout as sleep } from 'node:timers/promises';
import { LogHead, type FeedStart } from './cursor.ts';
import { readHead } from './head-statement.ts';
import { SharedReads } from './shared-reads.ts';
import type { ResolvedScope } from './scope.ts';

/** A connection that has caught up with the log and now waits for what comes next. */
export interface LiveMember {
  readonly scope: ResolvedScope;
  /** Everything of its scope up to here has been handed to it. */
  readonly cursor: Position;
  /**
   * New events of its scope after its cursor (possibly none), `next` = how far the log was read,
   * `hasMore` = the read was full and another follows at once. Called synchronously by the hub.
   */
  deliver(events: readonly OutboxEvent[], next: Position, hasMore: boolean): void;
  /**
   * The hub has let go of it (its shared tail fell behind retention): it has been removed and
   * should read on by itself from its own cursor, which decides whether that cursor expired.
   */
  resume(): void;
  /** The hub cannot go on for it (the feed is closing, or `deliver` threw); it has been removed. */
  fail(error: unknown): void;
}

export interface HubSettings {
  readonly schema: string;
  readonly pollIntervalMs: number;
  readonly batchSize: number;
  readonly onError: (error: unknown) => void;
}

const minHeldBackDelayMs = 2;
/** After a join, the hub looks at the log this soon, once for all joins meanwhile. */
const joinLookMs = 20;

/**
 * How long a member waits before it reads again after its join was refused `refusals` times in a
 * row. A refused member reads afresh, and a fresh read reaches the hub's tail (the watermark never
 * moves back), so it is refused again only when the tail moved on meanwhile; the pause makes sure
 * that no fault can turn this into a loop that spins.
 */
export function rejoinDelayMs(refusals: number): number {
  return refusals < 3 ? 0 : Math.min(1_000, 10 * 2 ** (refusals - 3));
}

/**
 * One per process and outbox (database handle and schema): the only LISTEN of every feed, the
 * shared tail read that serves every waiting connection, and single-flight catch-up reads.
 *
 * Waiting connections cost no query while the log is quiet. A wake-up (NOTIFY, a join, the
 * safety poll) runs one cycle: one unfiltered read of the log after the hub's head, handed out
 * in memory to every waiting connection by its scope, then one probe for committed events held
 * back by an older open transaction (no NOTIFY announces when that one ends, so the hub looks
 * again with a growing delay while the probe says so).
 */
export class FeedHub {
  readonly #database: Database;
  #settings: HubSettings;
  readonly #members = new Set<LiveMember>();
  readonly #reads: SharedReads;
  /** How far the log is known to reach: what a client's cursor is checked against. */
  readonly #log: LogHead;
  /** Every event up to here has been handed to the members waiting at the time. */
  #head: Position | undefined;
  #reading = false;
  #dirty = false;
  #scheduled = false;
  #closed = false;
  #listening: Promise<(() => Promise<void>) | undefined> | undefined;
  #pollTimer: NodeJS.Timeout | undefined;
  #heldBackTimer: NodeJS.Timeout | undefined;
  #heldBackDelayMs = minHeldBackDelayMs;
  #joinTimer: NodeJS.Timeout | undefined;

  constructor(database: Database, settings: HubSettings) {
    this.#database = database;
    this.#settings = settings;
    this.#reads = new SharedReads(database, settings.schema);
    this.#log = new LogHead(() => readHead(database, settings.schema));
  }

  get schema(): string {
    return this.#settings.schema;
  }

  /** A later feed on the same hub wants a shorter safety poll. */
  lowerPollInterval(ms: number): void {
    if (ms >= this.#settings.pollIntervalMs) return;
    this.#settings = { ...this.#settings, pollIntervalMs: ms };
    if (this.#pollTimer) {
      this.#stopTimers();
      this.#startPolling();
    }
  }

  /** Connections waiting for new events. */
  get waiting(): number {
    return this.#members.size;
  }

  /** Where the shared tail stands while connections wait; undefined when none does. */
  get head(): Position | undefined {
    return this.#members.size > 0 ? this.#head : undefined;
  }

  /** A page of the log for one scope, shared with identical requests (see `SharedReads`). */
  async read(scope: ResolvedScope, after: FeedStart, limit: number, fresh = true): Promise<FeedPage> {
    const page = await this.#reads.read(scope, after, limit, fresh);
    this.#log.observe(after, page.next);
    return page;
  }

  /**
   * Refuses a client's start that lies beyond the head of the log (`FeedCursorError`): call it
   * before reading from a cursor that came from a request.
   */
  checkStart(start: FeedStart): Promise<void> {
    return this.#log.check(start);
  }

  /**
   * Adds a member that has read the log up to its cursor. Refused (false) when the shared tail is
   * already past that cursor: the member would miss what lies between, so it reads on by itself,
   * afresh (see `rejoinDelayMs`). The tail starts at the first member's cursor, but never beyond
   * what the log has reached: no cursor can put the tail where the log is not.
   */
  join(member: LiveMember): boolean {
    if (this.#closed) return false;
    if (this.#members.size === 0 && !this.#reading) this.#head = undefined;
    if (this.#head === undefined) this.#head = this.#log.bound(member.cursor);
    else if (comparePositions(member.cursor, this.#head) < 0) return false;
    this.#members.add(member);
    this.#listen();
    this.#startPolling();
    // What committed between the member's last read and now may have been announced already:
    // look soon. Not at once, so that the joins of a burst of connections share one look.
    this.#joinTimer ??= setTimeout(() => {
      this.#joinTimer = undefined;
      this.wake();
    }, joinLookMs);
    return true;
  }

  /**
   * One step of a member's catch-up: joins it if it stands at the shared tail (undefined), else
   * reads its next page, after the pause `rejoinDelayMs(refusals)` and afresh after a refusal.
   */
  async joinOrRead(member: LiveMember, refusals: number, limit: number): Promise<FeedPage | undefined> {
    const head = this.head;
    if (head !== undefined && comparePositions(member.cursor, head) >= 0 && this.join(member)) return undefined;
    const pause = rejoinDelayMs(refusals);
    if (pause > 0) await sleep(pause);
    return this.read(member.scope, member.cursor, limit, refusals > 0);
  }

  leave(member: LiveMember): void {
    this.#members.delete(member);
    if (this.#members.size === 0) this.#stopTimers();
  }

  /** Something may have been committed: run a cycle soon (many calls in one turn make one cycle). */
  wake(): void {
    if (this.#scheduled || this.#closed) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      void this.#cycle();
    });
  }

  /** Stops listening; members still waiting are failed with `reason`. */
  async close(reason: Error): Promise<void> {
    this.#closed = true;
    this.#stopTimers();
    for (const member of [...this.#members]) this.#fail(member, reason);
    const unlisten = await this.#listening?.catch(() => undefined);
    await unlisten?.().catch(() => {});
  }

  async #cycle(): Promise<void> {
    if (this.#reading) {
      this.#dirty = true;
      return;
    }
    this.#reading = true;
    try {
      let hasMore = false;
      let heldBack = false;
      let progressed = false;
      do {
        this.#dirty = false;
        if (this.#members.size === 0 || this.#head === undefined) return;
        const page = await readFeed(this.#database, this.#settings.schema, { after: this.#head, limit: this.#settings.batchSize });
        this.#log.observe(this.#head, page.next);
        this.#head = page.next;
        this.#distribute(page);
        hasMore = page.hasMore;
        heldBack = page.heldBack;
        progressed ||= page.events.length > 0;
      } while ((hasMore || this.#dirty) && !this.#closed);
      if (this.#members.size > 0) this.#lookAgainIfHeldBack(heldBack, progressed);
    } catch (error) {
      if (error instanceof CursorExpiredError) {
        const members = [...this.#members];
        this.#members.clear();
        this.#head = undefined;
        this.#stopTimers();
        for (const member of members) member.resume();
      } else {
        this.#settings.onError(error);
      }
    } finally {
      this.#reading = false;
    }
  }

  #distribute(page: FeedPage): void {
    const byScope = new Map<string, OutboxEvent[]>();
    for (const member of [...this.#members]) {
      if (!this.#members.has(member)) continue;
      let selected = byScope.get(member.scope.key);
      if (selected === undefined) {
        selected = page.events.filter((event) => member.scope.matches(event));
        byScope.set(member.scope.key, selected);
      }
      const first = selected[0];
      const fresh =
        first !== undefined && comparePositions(first.position, member.cursor) <= 0
          ? selected.filter((event) => comparePositions(event.position, member.cursor) > 0)
          : selected;
      try {
        member.deliver(fresh, page.next, page.hasMore);
      } catch (error) {
        this.#fail(member, error);
      }
    }
  }

  /**
   * Committed events wait behind a partition whose committer is still committing (for about one
   * commit); its own NOTIFY may not come (publish without notify), so look again after 2, 4, 8 ...
   * ms, up to a poll interval, starting again from 2 ms whenever a read brought events.
   */
  #lookAgainIfHeldBack(held: boolean, progressed: boolean): void {
    clearTimeout(this.#heldBackTimer);
    if (progressed) this.#heldBackDelayMs = minHeldBackDelayMs;
    if (held) {
      this.#heldBackTimer = setTimeout(() => this.wake(), this.#heldBackDelayMs).unref();
      this.#heldBackDelayMs = Math.min(this.#heldBackDelayMs * 2, this.#settings.pollIntervalMs);
    } else {
      this.#heldBackDelayMs = minHeldBackDelayMs;
    }
  }

  #fail(member: LiveMember, error: unknown): void {
    this.leave(member);
    try {
      member.fail(error);
    } catch (failure) {
      this.#settings.onError(failure);
    }
  }

  #listen(): void {
    if (this.#listening) return;
    const channel = `${this.#settings.schema}_events`;
    this.#listening = this.#database.listen(channel, () => this.wake()).catch((error: unknown) => {
      // Try again on the next join; until then the safety poll keeps feeds moving.
      this.#listening = undefined;
      this.#settings.onError(error);
      return undefined;
    });
  }

  #startPolling(): void {
    this.#pollTimer ??= setInterval(() => {
      if (!this.#listening) this.#listen();
      this.wake();
    }, this.#settings.pollIntervalMs).unref();
  }

  #stopTimers(): void {
    clearInterval(this.#pollTimer);
    clearTimeout(this.#joinTimer);
    this.#joinTimer = undefined;
    clearTimeout(this.#heldBackTimer);
    this.#pollTimer = undefined;
    this.#heldBackTimer = undefined;
  }
}
