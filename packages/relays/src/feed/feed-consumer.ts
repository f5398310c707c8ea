import { CheckpointConflictError } from '@tidings/inbox';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ResolvedConsumerOptions } from './consumer-options.ts';
import { compareCursors } from './cursor.ts';
import type { FeedEnvelope } from './envelope.ts';
import { FeedResponseError } from './errors.ts';
import { isFatal } from './response-error.ts';

/** A running feed consumer. */
export interface FeedConsumer {
  /** The cursor committed with the last applied event; null before the first. */
  readonly cursor: string | null;
  /**
   * Settles when the consumer has stopped: resolves after `stop()`, rejects with the error that
   * stopped it — `CursorExpiredError`, `InvalidCursorError`, `AccessDeniedError`, or a
   * `FeedResponseError` for a status that asking again cannot change.
   */
  readonly done: Promise<void>;
  /** Closes the connection; an event being applied is committed first. Resolves when stopped. */
  stop(): Promise<void>;
}

/** What one connection of a consumer (a stream, or a run of polls) is given by the loop around it. */
export interface Session {
  readonly signal: AbortSignal;
  /** Where to resume: the last cursor applied or passed; null means start at `from`. */
  readonly cursor: string | null;
  /**
   * Applies one event and stores `saveAs` (default: the event's cursor) with it, in one
   * transaction; skips events at or before the stored cursor.
   */
  apply(event: FeedEnvelope, saveAs?: string): Promise<void>;
  /** Moves the in-memory position past events the feed skipped for this scope (nothing stored). */
  advance(cursor: string): void;
  /** Something arrived: the next failure starts the backoff afresh. */
  progressed(): void;
}

/** One connection's life: resolves with a delay before the next one, or throws to back off. */
export type Connect = (session: Session) => Promise<{ readonly reconnectAfterMs?: number }>;

/**
 * The loop shared by the SSE and polling consumers: load the checkpoint, connect, apply each event
 * in a transaction together with its cursor, reconnect with backoff from the last committed cursor.
 * A crash anywhere leaves the effects and the checkpoint together, applied or not.
 */
export function runConsumer<Trx>(options: ResolvedConsumerOptions<Trx>, connect: Connect): FeedConsumer {
  const controller = new AbortController();
  let saved: string | null = null;
  let position: string | null = null;
  let attempt = 0;

  const loadCheckpoint = async (): Promise<void> => {
    saved = await options.database.transaction((trx) => options.inbox.loadCheckpoint(trx, options.source));
    position = saved;
  };

  const session = (signal: AbortSignal): Session => ({
    signal,
    get cursor() {
      return position;
    },
    async apply(event, saveAs = event.cursor) {
      if (saved !== null && compareCursors(event.cursor, saved) <= 0) return;
      const expected = saved;
      await options.database.transaction(async (trx) => {
        await options.handle(event, trx);
        await options.inbox.saveCheckpoint(trx, { source: options.source, position: saveAs, expected });
      });
      saved = saveAs;
      position = saveAs;
    },
    advance(cursor) {
      if (position === null || compareCursors(cursor, position) > 0) position = cursor;
    },
    progressed() {
      attempt = 0;
    },
  });

  const run = async (): Promise<void> => {
    const { signal } = controller;
    while (!signal.aborted) {
      let delayMs: number;
      try {
        if (saved === null && position === null) await loadCheckpoint();
        const connection = new AbortController();
        const onStop = (): void => connection.abort(signal.reason);
        signal.addEventListener('abort', onStop, { once: true });
        // stop() may have come while the checkpoint was loading, before the listener existed.
        if (signal.aborted) onStop();
        try {
          delayMs = (await connect(session(connection.signal))).reconnectAfterMs ?? 0;
        } finally {
          signal.removeEventListener('abort', onStop);
          connection.abort();
        }
      } catch (error) {
        if (signal.aborted) return;
        if (isFatal(error)) throw error;
        options.onError(error);
        // Another worker moved the checkpoint: take its position rather than apply anything twice.
        if (error instanceof CheckpointConflictError) await loadCheckpoint().catch(options.onError);
        delayMs = backoff(attempt++, options.initialMs, options.maxMs);
        // A server that said when to come back (429 with Retry-After) is not asked sooner.
        if (error instanceof FeedResponseError && error.retryAfterMs !== undefined) delayMs = Math.max(delayMs, error.retryAfterMs);
      }
      await sleep(delayMs, undefined, { signal }).catch(() => {});
    }
  };

  const done = run();
  done.catch(() => {});
  return {
    get cursor() {
      return saved;
    },
    done,
    async stop() {
      controller.abort(new Error('the consumer was stopped'));
      await done.catch(() => {});
    },
  };
}

/** Exponential backoff with jitter between half and all of the step. */
export function backoff(attempt: number, initialMs: number, maxMs: number): number {
  const step = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(step / 2 + (Math.random() * step) / 2);
}
