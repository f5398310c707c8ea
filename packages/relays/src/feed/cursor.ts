import type { IncomingMessage } from 'node:http';
import { comparePositions, encodePosition, logStart, type Position } from '@tidings/outbox';
import { FeedCursorError } from './errors.ts';

/**
 * Everything the feeds do with a client's cursor lives here: reading it from a request, checking
 * its shape and range, refusing one beyond the head of the log, and writing positions back out.
 * A client's cursor is never trusted further than this module has checked it.
 */

/** Where a feed request starts: after a position, at the oldest event kept, or from now on. */
export type FeedStart = Position | 'start' | 'now';

/** A commit number and an event's id are both bigint, a signed 64-bit number. */
const maxBigint = 2n ** 63n - 1n;
const cursorShape = /^c(\d{1,20})-(\d{1,20})$/;
/** The cursors of tidings before log positions became commit numbers: `<transaction id>-<event id>`. */
const legacyShape = /^\d{1,20}-\d{1,20}$/;
/** A refused cursor is echoed back at most this long. */
const echoLength = 100;
const whatToDo =
  "pass back a cursor exactly as this feed returned it (an event's id or cursor, a page's next), or start again with start or now";

/** The opaque text of a position, as the feeds hand it to clients. */
export function cursorText(position: Position): string {
  return encodePosition(position);
}

/**
 * Reads where a request resumes: the `Last-Event-ID` header (sent by EventSource on every
 * reconnect, so it wins over the URL it reconnects to), else `?after=`, else `fallback`.
 * Both take an opaque cursor, `start` or `now`; anything else throws `FeedCursorError`.
 */
export function requestStart(request: IncomingMessage, query: URLSearchParams, fallback: 'start' | 'now', header = true): FeedStart {
  const lastEventId = header ? request.headers['last-event-id'] : undefined;
  const text = typeof lastEventId === 'string' && lastEventId !== '' ? lastEventId : query.get('after');
  if (text === null || text === '') return fallback;
  return parseStart(text);
}

/** `start`, `now`, or a cursor as tidings encoded it. */
export function parseStart(text: string): FeedStart {
  if (text === 'start' || text === 'now') return text;
  return parseCursor(text);
}

/**
 * A cursor as tidings encoded it: `c<commit number>-<event id>`, each in its column's range
 * (bigint). Anything else throws `FeedCursorError` saying what is wrong; a cursor of the old
 * `<transaction id>-<event id>` form is refused as `legacy`: it cannot be placed in commit order.
 */
export function parseCursor(text: string): Position {
  const shown = text.length > echoLength ? `${text.slice(0, echoLength)}…` : text;
  const match = cursorShape.exec(text);
  if (!match) {
    if (legacyShape.test(text)) {
      throw new FeedCursorError(
        shown,
        'legacy',
        `${JSON.stringify(shown)} is a cursor of the old (transaction id) form, which cannot be placed in commit order; ` +
          'resume from your own state and restart the feed from start or now.',
      );
    }
    throw new FeedCursorError(shown, 'unknown', `${JSON.stringify(shown)} is not a tidings cursor; ${whatToDo}.`);
  }
  const seq = BigInt(match[1]!);
  const id = BigInt(match[2]!);
  if (seq > maxBigint || id > maxBigint) {
    throw new FeedCursorError(
      shown,
      'out-of-range',
      `cursor ${JSON.stringify(shown)} is out of range: its commit number and its event id may each be at most ${maxBigint}; ${whatToDo}.`,
    );
  }
  return { seq: seq.toString(), id: id.toString() };
}

/** Orders two cursors as the feed orders their events (negative: `a` comes first). */
export function compareCursors(a: string, b: string): number {
  return comparePositions(parseCursor(a), parseCursor(b));
}

/** The log's head as one read of it sees it. */
export interface HeadReading {
  /** The last commit number drawn: no committed event has a larger one, no cursor one above the next. */
  readonly lastSeq: string;
}

/**
 * How far the log reaches, as known in this process, and the check of a client's cursor against
 * it. A cursor whose commit number has not been drawn yet lies beyond the head of the log and is
 * refused. What a client's cursor may put into state shared between connections is bounded by
 * the furthest position a read of the log has returned (`bound`), so no cursor, however far
 * ahead, moves a shared position beyond what every reader can reach. Both only move forward, so
 * a position once reached stays within the log.
 */
export class LogHead {
  readonly #readHead: () => Promise<HeadReading>;
  #visible: Position = logStart;
  #lastSeq = 0n;
  #pending: Promise<void> | undefined;

  /** `readHead` reads the log's head in one statement. */
  constructor(readHead: () => Promise<HeadReading>) {
    this.#readHead = readHead;
  }

  /** The furthest position a read returned: every reader's own read reaches at least this far. */
  get visible(): Position {
    return this.#visible;
  }

  /**
   * A read of the log from `after` returned `next`. Taken as reached only when `after` is not
   * beyond what is known to be reached (else `next` may be the client's cursor itself).
   */
  observe(after: FeedStart, next: Position): void {
    if (typeof after === 'object' && comparePositions(after, this.#visible) > 0) return;
    if (comparePositions(next, this.#visible) > 0) this.#visible = next;
  }

  /**
   * Refuses a start beyond the head of the log with `FeedCursorError` (`beyond-head`). Costs a
   * query only for a cursor beyond every commit number seen so far; that read starts after the
   * call, so a cursor another process handed out a moment ago is accepted.
   */
  async check(start: FeedStart): Promise<void> {
    // A read hands out "before the next number" (last + 1, id 0) as its next cursor.
    if (typeof start === 'string' || BigInt(start.seq) <= this.#lastSeq + 1n) return;
    await this.#refresh();
    if (BigInt(start.seq) <= this.#lastSeq + 1n) return;
    const cursor = cursorText(start);
    throw new FeedCursorError(
      cursor,
      'ahead',
      `cursor ${JSON.stringify(cursor)} is beyond the head of the log: commit number ${start.seq} has not been ` +
        `drawn yet (the last is ${this.#lastSeq}), so no feed of this database handed it out (a cursor from another ` +
        `database or cluster?); ${whatToDo}.`,
    );
  }

  /** `position`, or the furthest position reached if `position` lies beyond it. */
  bound(position: Position): Position {
    return comparePositions(position, this.#visible) > 0 ? this.#visible : position;
  }

  /** One read of the head for every check waiting now; it starts after each of them arrived. */
  #refresh(): Promise<void> {
    this.#pending ??= new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      this.#pending = undefined;
      const head = await this.#readHead();
      if (BigInt(head.lastSeq) > this.#lastSeq) this.#lastSeq = BigInt(head.lastSeq);
    });
    return this.#pending;
  }
}
