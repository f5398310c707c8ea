import type { ServerResponse } from 'node:http';
import type { FeedPage, OutboxEvent, Position } from '@tidings/outbox';
import { maxPosition } from '@tidings/outbox/internal';
import type { FeedHub, LiveMember } from '../feed/feed-hub.ts';
import { isServerSide, problemOf } from '../feed/problem.ts';
import type { ResolvedScope } from '../feed/scope.ts';
import { heartbeatFrame, problemFrame, type FrameEncoder } from './sse-frames.ts';

export interface ConnectionSettings {
  readonly hub: FeedHub;
  readonly batchSize: number;
  readonly drainTimeoutMs: number;
  readonly onError: (error: unknown) => void;
  /** The envelope's frames, or the CloudEvents' ones. */
  readonly encoder: FrameEncoder;
}

/**
 * One client's stream. It catches up by reading pages after its cursor, writing each page only
 * once the previous one has drained; then it joins the hub and waits. A live write the socket
 * cannot take at once (`write()` returns false) takes it out of the hub until the socket drains,
 * after which it catches up again by reading — so what a slow client costs the server is bounded
 * by the socket's high-water mark plus one batch. A client that does not drain within
 * `drainTimeoutMs` is disconnected; it resumes from its `Last-Event-ID`.
 */
export class SseConnection implements LiveMember {
  readonly scope: ResolvedScope;
  readonly #response: ServerResponse;
  readonly #settings: ConnectionSettings;
  #cursor: Position;
  #closed = false;
  #onClosed: (() => void) | undefined;

  constructor(response: ServerResponse, scope: ResolvedScope, cursor: Position, settings: ConnectionSettings) {
    this.#response = response;
    this.scope = scope;
    this.#cursor = cursor;
    this.#settings = settings;
    response.on('close', () => this.#close());
  }

  get cursor(): Position {
    return this.#cursor;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Calls `listener` once the client is gone (at once if it is). */
  onClosed(listener: () => void): void {
    if (this.#closed) listener();
    else this.#onClosed = listener;
  }

  /** Sends `first` (the page read before the headers went out, if any), then follows the log. */
  start(first: FeedPage | undefined): void {
    void this.#catchUp(first);
  }

  deliver(events: readonly OutboxEvent[], next: Position): void {
    if (this.#closed) return;
    const flowing = this.#write(events);
    this.#cursor = maxPosition(this.#cursor, next);
    if (!flowing) {
      this.#settings.hub.leave(this);
      void this.#drained().then((drained) => {
        if (drained) void this.#catchUp(undefined);
      });
    }
  }

  resume(): void {
    void this.#catchUp(undefined);
  }

  fail(error: unknown): void {
    this.#end(error);
  }

  /** A comment line, unless the socket is still full (a heartbeat must not add to a backlog). */
  heartbeat(): void {
    if (!this.#closed && !this.#response.writableNeedDrain) this.#response.write(heartbeatFrame);
  }

  /** Ends the stream politely (the client reconnects after its retry delay). */
  end(): void {
    if (!this.#closed) this.#response.end();
  }

  async #catchUp(first: FeedPage | undefined): Promise<void> {
    const { hub, batchSize } = this.#settings;
    let page = first;
    // After a refused join, the next read must be a new one: a page shared from before the refusal
    // cannot reach the hub's tail, and reading it again would spin without yielding.
    let refusals = 0;
    try {
      for (;;) {
        if (this.#closed) return;
        if (page === undefined) {
          page = await hub.joinOrRead(this, refusals, batchSize);
          if (page === undefined || this.#closed) return;
        }
        const flowing = this.#write(page.events);
        this.#cursor = maxPosition(this.#cursor, page.next);
        const hasMore = page.hasMore;
        page = undefined;
        if (!flowing) {
          refusals = 0;
          if (!(await this.#drained())) return;
        } else if (hasMore) {
          refusals = 0;
        } else if (hub.join(this)) {
          return;
        } else {
          refusals++;
        }
      }
    } catch (error) {
      this.#end(error);
    }
  }

  /** Writes a batch as one chunk; false when the socket is above its high-water mark. */
  #write(events: readonly OutboxEvent[]): boolean {
    if (events.length === 0) return !this.#response.writableNeedDrain;
    return this.#response.write(this.#settings.encoder.frames(events));
  }

  /** True once the socket drained; false if the client left or was too slow and was cut off. */
  #drained(): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (drained: boolean): void => {
        clearTimeout(timer);
        this.#response.off('drain', onDrain);
        this.#response.off('close', onClose);
        resolve(drained);
      };
      const onDrain = (): void => done(true);
      const onClose = (): void => done(false);
      const timer = setTimeout(() => {
        done(false);
        // Too slow: drop the connection and what is buffered for it; it resumes by cursor.
        this.#response.destroy();
      }, this.#settings.drainTimeoutMs);
      this.#response.once('drain', onDrain);
      this.#response.once('close', onClose);
    });
  }

  #end(error: unknown): void {
    if (this.#closed) return;
    this.#settings.hub.leave(this);
    const problem = problemOf(error);
    if (isServerSide(problem)) {
      this.#settings.onError(error);
      this.#response.end();
    } else {
      // The stream cannot go on from this cursor: say why, then close. On reconnecting with it the
      // client gets the same problem as an HTTP status, which ends EventSource's retries.
      this.#response.end(problemFrame(problem));
    }
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#settings.hub.leave(this);
    this.#onClosed?.();
    this.#onClosed = undefined;
  }
}
