import { type FeedPage, type OutboxEvent, type Position } from '@tidings/outbox';
import { maxPosition } from '@tidings/outbox/internal';
import { setTimeout as sleep } from 'node:timers/promises';
import { rejoinDelayMs, type FeedHub, type LiveMember } from '../feed/feed-hub.ts';
import type { ResolvedScope } from '../feed/scope.ts';

/**
 * One long-poll request waiting for the first events of its scope after its cursor. It reads by
 * itself only until it has caught up with the hub's shared tail; from then on, it costs no query.
 */
export class LongPoll implements LiveMember {
  readonly scope: ResolvedScope;
  readonly #hub: FeedHub;
  readonly #limit: number;
  #cursor: Position;
  #settle: ((outcome: FeedPage | Error | 'resume') => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #finished = false;

  constructor(hub: FeedHub, scope: ResolvedScope, cursor: Position, limit: number) {
    this.#hub = hub;
    this.scope = scope;
    this.#cursor = cursor;
    this.#limit = limit;
  }

  get cursor(): Position {
    return this.#cursor;
  }

  /**
   * Resolves with the first page that has events, or with an empty page at the cursor reached
   * when `waitMs` is over or `finish()` is called.
   */
  async wait(waitMs: number): Promise<FeedPage> {
    const deadline = Date.now() + waitMs;
    let refusals = 0;
    for (;;) {
      if (this.#finished) return this.#idle();
      if (this.#hub.join(this)) {
        refusals = 0;
        const outcome = await new Promise<FeedPage | Error | 'resume'>((resolve) => {
          if (this.#finished) return resolve(this.#idle());
          this.#settle = resolve;
          this.#timer = setTimeout(() => this.finish(), Math.max(0, deadline - Date.now()));
        });
        if (outcome instanceof Error) throw outcome;
        if (outcome !== 'resume') return outcome;
        continue;
      }
      // Refused: the hub's tail is past this cursor. A fresh read reaches it (see rejoinDelayMs).
      const pause = Math.min(rejoinDelayMs(++refusals), Math.max(0, deadline - Date.now()));
      if (pause > 0) await sleep(pause);
      const page = await this.#hub.read(this.scope, this.#cursor, this.#limit);
      if (page.events.length > 0) return page;
      this.#cursor = maxPosition(this.#cursor, page.next);
      if (Date.now() >= deadline) return this.#idle();
    }
  }

  /** Stops waiting now and answers with what there is (nothing). */
  finish(): void {
    this.#finished = true;
    this.#done(this.#idle());
  }

  deliver(events: readonly OutboxEvent[], next: Position, hasMore: boolean): void {
    this.#cursor = maxPosition(this.#cursor, next);
    if (events.length === 0) return;
    const page =
      events.length > this.#limit
        ? { events: events.slice(0, this.#limit), next: events[this.#limit - 1]!.position, hasMore: true, heldBack: false }
        : { events: [...events], next, hasMore, heldBack: false };
    this.#done(page);
  }

  resume(): void {
    this.#done('resume');
  }

  fail(error: unknown): void {
    this.#done(error instanceof Error ? error : new Error(String(error)));
  }

  #idle(): FeedPage {
    return { events: [], next: this.#cursor, hasMore: false, heldBack: false };
  }

  #done(outcome: FeedPage | Error | 'resume'): void {
    this.#hub.leave(this);
    clearTimeout(this.#timer);
    const settle = this.#settle;
    this.#settle = undefined;
    settle?.(outcome);
  }
}
