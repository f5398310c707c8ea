import { comparePositions, type FeedPage, type OutboxEvent, type Position } from '@tidings/outbox';
import { maxPosition } from '@tidings/outbox/internal';
import type { WebSocket } from 'ws';
import { cursorText, parseCursor } from '../feed/cursor.ts';
import type { FeedHub, LiveMember } from '../feed/feed-hub.ts';
import { isServerSide, problemOf } from '../feed/problem.ts';
import type { ResolvedScope } from '../feed/scope.ts';
import { ClientMessageError, closeCodes, errorMessage, problemCloseCode } from './websocket-protocol.ts';

export interface ConnectionSettings {
  readonly hub: FeedHub;
  readonly batchSize: number;
  readonly onError: (error: unknown) => void;
  /** The `event` message of an event (see `eventMessages`). */
  readonly eventMessage: (event: OutboxEvent) => string;
}

/**
 * Bytes a connection may have waiting in its socket's buffer before it sends no more: node's
 * default high-water mark for a socket, the point where SSE's `write()` returns false.
 */
const bufferLimit = 16 * 1024;

/**
 * One subscription on one WebSocket, flow-controlled by credit: at most `maxInFlight` events are
 * sent and not yet acknowledged. While it has credit and has caught up, it waits in the hub; when
 * the credit runs out it leaves the hub and sends nothing more until an `ack` frees some, then
 * catches up by reading from where it stopped. So a client that does not acknowledge costs the
 * server at most `maxInFlight` events in its socket's buffer, and slows no other connection.
 *
 * Credit alone trusts the client to acknowledge only what it read; one that acknowledges cursors
 * it learnt elsewhere (they are the log's, the same on every connection) without reading would
 * have the server pile up everything in memory. So a connection also stops while more than
 * `bufferLimit` bytes wait in its socket's buffer, and goes on once they are written out: then at
 * most `bufferLimit` and `maxInFlight` events wait there. A client that reads nothing answers no
 * ping either, and the heartbeat ends it.
 */
export class WebSocketConnection implements LiveMember {
  readonly scope: ResolvedScope;
  readonly #socket: WebSocket;
  readonly #settings: ConnectionSettings;
  readonly #maxInFlight: number;
  /** Everything of the scope up to here has been sent. */
  #cursor: Position;
  /** Positions of the events sent and not acknowledged, oldest first. */
  readonly #inFlight: Position[] = [];
  /** The last event sent, or where the subscription started. */
  #lastSent: Position;
  /** Out of credit or with a full buffer: waiting for an ack or a write, neither in the hub nor reading. */
  #stalled = false;
  #closed = false;

  constructor(socket: WebSocket, scope: ResolvedScope, cursor: Position, maxInFlight: number, settings: ConnectionSettings) {
    this.#socket = socket;
    this.scope = scope;
    this.#cursor = cursor;
    this.#lastSent = cursor;
    this.#maxInFlight = maxInFlight;
    this.#settings = settings;
  }

  get cursor(): Position {
    return this.#cursor;
  }

  /** Sends `first` (the page read when the client subscribed), then follows the log. */
  start(first: FeedPage): void {
    void this.#catchUp(first);
  }

  deliver(events: readonly OutboxEvent[], next: Position): void {
    if (this.#closed) return;
    if (!this.#send(events, next)) this.#settings.hub.leave(this);
  }

  resume(): void {
    void this.#catchUp(undefined);
  }

  fail(error: unknown): void {
    this.end(error);
  }

  /** The client acknowledged everything up to `text`: frees credit, and goes on if it had run out. */
  ack(text: string): void {
    const position = parseCursor(text);
    if (comparePositions(position, this.#lastSent) > 0) {
      throw new ClientMessageError('ack.cursor', `${JSON.stringify(text)} lies after the last event sent (${cursorText(this.#lastSent)}); acknowledge only cursors received`);
    }
    let acked = 0;
    while (acked < this.#inFlight.length && comparePositions(this.#inFlight[acked]!, position) <= 0) acked++;
    this.#inFlight.splice(0, acked);
    this.#goOn();
  }

  /** Whether another event may be sent now: credit left, and room in the socket's buffer. */
  #canSend(): boolean {
    return this.#inFlight.length < this.#maxInFlight && this.#socket.bufferedAmount <= bufferLimit;
  }

  /** Catches up again if it stopped and may send now (after an ack, or once a send was written out). */
  readonly #goOn = (): void => {
    if (!this.#stalled || this.#closed || !this.#canSend()) return;
    this.#stalled = false;
    void this.#catchUp(undefined);
  };

  /** Stops: the client is told why (an `error` and a `4000 + status` close) unless the server is at fault. */
  end(error?: unknown): void {
    if (this.#closed) return;
    this.gone();
    if (error === undefined) {
      this.#socket.close(closeCodes.goingAway, 'the feed is closing');
      return;
    }
    const problem = problemOf(error);
    if (isServerSide(problem)) this.#settings.onError(error);
    if (this.#socket.readyState === this.#socket.OPEN) this.#socket.send(errorMessage(problem));
    this.#socket.close(problemCloseCode(problem), problem.error);
  }

  /** The socket is gone (or going): nothing more is sent. */
  gone(): void {
    this.#closed = true;
    this.#settings.hub.leave(this);
  }

  /**
   * Sends what the credit allows of `events` (all of the scope after the cursor, read up to
   * `next`), or nothing while the socket's buffer is full. True when everything was sent; false
   * when it had to stop first, the cursor then standing at the last event sent, so that reading
   * on from it sends the rest.
   */
  #send(events: readonly OutboxEvent[], next: Position): boolean {
    // A page goes out whole as far as the credit allows (as SSE writes a batch), so that what is
    // read is not read again: the buffer holds at most `bufferLimit` and one page.
    const room = this.#socket.bufferedAmount > bufferLimit ? 0 : this.#maxInFlight - this.#inFlight.length;
    const sending = events.length <= room ? events : events.slice(0, room);
    for (const event of sending) {
      this.#socket.send(this.#settings.eventMessage(event), this.#goOn);
      this.#inFlight.push(event.position);
      this.#lastSent = event.position;
    }
    if (sending.length < events.length) {
      this.#cursor = this.#lastSent;
      this.#stalled = true;
      return false;
    }
    this.#cursor = maxPosition(this.#cursor, next);
    if (!this.#canSend()) {
      this.#stalled = true;
      return false;
    }
    return true;
  }

  async #catchUp(first: FeedPage | undefined): Promise<void> {
    const { hub, batchSize } = this.#settings;
    let page = first;
    // As in the SSE feed: after a refused join the next read must be a fresh one.
    let refusals = 0;
    try {
      for (;;) {
        if (this.#closed || this.#stalled) return;
        if (page === undefined) {
          page = await hub.joinOrRead(this, refusals, Math.min(batchSize, this.#maxInFlight - this.#inFlight.length));
          if (page === undefined || this.#closed) return;
        }
        const all = this.#send(page.events, page.next);
        const hasMore = page.hasMore;
        page = undefined;
        if (!all) return;
        if (hasMore) refusals = 0;
        else if (hub.join(this)) return;
        else refusals++;
      }
    } catch (error) {
      this.end(error);
    }
  }
}
