import { CheckpointConflictError, inbox } from '@tidings/inbox';
import { asError, Backoff, pause } from '../shared/backoff.ts';
import { HandlerFailedError, lifecycle, type Consumer, type FeedDelivery, type ReceivedEvent } from '../shared/consumer.ts';
import { abortedByHandler } from '../shared/handler-fault.ts';
import { runHandler } from '../shared/handler-span.ts';
import { runInTransaction, type TransactionSource } from '../shared/transaction-source.ts';
import type { ResolvedConsumerOptions } from './consumer-options.ts';
import { compareCursors } from './cursor.ts';
import type { FeedEnvelope } from './envelope.ts';
import { FeedResponseError } from './errors.ts';
import { isFatal } from './response-error.ts';

/**
 * A running feed consumer. `done` rejects with the error that stopped it by itself —
 * `CursorExpiredError`, `InvalidCursorError`, `AccessDeniedError`, a `FeedResponseError` for a
 * status that asking again cannot change, or `HandlerFailedError` after `retry.attempts`.
 */
export interface FeedConsumer extends Consumer {
  /** The cursor committed with the last applied event; null before the first. */
  readonly cursor: string | null;
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
  apply(envelope: FeedEnvelope, saveAs?: string): Promise<void>;
  /** Moves the in-memory position past events the feed skipped for this scope (nothing stored). */
  advance(cursor: string): void;
  /** Something arrived: the next failure starts the backoff afresh. */
  progressed(): void;
}

/** One connection's life: resolves with a delay before the next one, or throws to back off. */
export type Connect = (session: Session) => Promise<{ readonly reconnectAfterMs?: number }>;

/** The handler failed on an event (it threw, or returned with its transaction aborted). */
class HandlerFailed {
  readonly eventId: string;
  readonly error: Error;
  constructor(eventId: string, error: unknown) {
    this.eventId = eventId;
    this.error = asError(error);
  }
}

/** The event a feed envelope holds, as the handler receives it. */
export function receivedFromFeed(envelope: FeedEnvelope, transport: FeedDelivery['transport'], attempt: number): ReceivedEvent<FeedDelivery> {
  const createdAt = new Date(envelope.createdAt);
  return {
    eventId: envelope.eventId,
    topic: envelope.topic,
    key: envelope.key,
    tenant: envelope.tenant,
    payload: envelope.payload,
    headers: envelope.headers ?? {},
    createdAt: Number.isNaN(createdAt.getTime()) ? null : createdAt,
    attempt,
    delivery: { transport, cursor: envelope.cursor },
  };
}

/**
 * The loop shared by the SSE and polling consumers: load the checkpoint, connect, apply each event
 * in a transaction together with its cursor, reconnect with backoff from the last committed cursor.
 * A crash anywhere leaves the effects and the checkpoint together, applied or not. A failing
 * handler ends the connection; the event is tried again after the retry delay, from the stored
 * cursor, so nothing after it is applied first.
 */
export function runConsumer<Source extends TransactionSource>(
  options: ResolvedConsumerOptions<Source>,
  transport: FeedDelivery['transport'],
  connect: Connect,
): FeedConsumer {
  const controller = new AbortController();
  const box = inbox({ consumer: options.consumer, schema: options.schema });
  const life = lifecycle();
  const reconnects = new Backoff(options.reconnect.minDelayMs, options.reconnect.maxDelayMs);
  const retries = new Backoff(options.retry.minDelayMs, options.retry.maxDelayMs);
  /** The event the handler failed on last, and how often in a row. */
  let failing: { eventId: string; runs: number } | undefined;
  let saved: string | null = null;
  let position: string | null = null;

  const loadCheckpoint = async (): Promise<void> => {
    saved = await runInTransaction(options.database, (trx) => box.loadCheckpoint(trx, options.source));
    position = saved;
  };

  const session = (signal: AbortSignal): Session => {
    let heard = false;
    return {
    signal,
    get cursor() {
      return position;
    },
    async apply(envelope, saveAs = envelope.cursor) {
      if (saved !== null && compareCursors(envelope.cursor, saved) <= 0) return;
      const expected = saved;
      const attempt = failing?.eventId === envelope.eventId ? failing.runs + 1 : 1;
      const event = receivedFromFeed(envelope, transport, attempt);
      try {
        await runInTransaction(options.database, async (trx) => {
          try {
            await runHandler(options.consumer, event, () => options.handler(trx, event));
          } catch (error) {
            throw new HandlerFailed(event.eventId, error);
          }
          await box.saveCheckpoint(trx, { source: options.source, position: saveAs, expected });
        });
      } catch (error) {
        // A handler that caught a database error aborted the transaction: its failure, like a throw.
        if (abortedByHandler(error)) throw new HandlerFailed(event.eventId, error);
        throw error;
      }
      saved = saveAs;
      position = saveAs;
      failing = undefined;
      retries.reset();
      options.onEvent({ type: 'committed', eventId: event.eventId, attempt, cursor: saveAs });
    },
    advance(cursor) {
      if (position === null || compareCursors(cursor, position) > 0) position = cursor;
    },
    progressed() {
      reconnects.reset();
      if (!heard) options.onEvent({ type: 'connected' });
      heard = true;
    },
    };
  };

  /** The pause after a failed connection, or the error that stops the consumer. */
  const afterFailure = async (error: unknown): Promise<number> => {
    if (error instanceof HandlerFailed) {
      const runs = failing?.eventId === error.eventId ? failing.runs + 1 : 1;
      failing = { eventId: error.eventId, runs };
      if (runs >= options.retry.attempts) throw new HandlerFailedError(error.eventId, runs, error.error);
      const delayMs = retries.next();
      options.onEvent({ type: 'retry-scheduled', eventId: error.eventId, attempt: runs, delayMs, error: error.error });
      return delayMs;
    }
    if (isFatal(error)) throw error;
    let delayMs = reconnects.next();
    // A server that said when to come back (429 with Retry-After) is not asked sooner.
    if (error instanceof FeedResponseError && error.retryAfterMs !== undefined) delayMs = Math.max(delayMs, error.retryAfterMs);
    if (error instanceof CheckpointConflictError) {
      // Another worker moved the checkpoint: take its position rather than apply anything twice.
      options.onEvent({ type: 'error', error });
      await loadCheckpoint().catch((failure: unknown) => options.onEvent({ type: 'error', error: asError(failure) }));
    } else {
      options.onEvent({ type: 'disconnected', error: asError(error), delayMs });
    }
    return delayMs;
  };

  const run = async (): Promise<void> => {
    const { signal } = controller;
    while (!signal.aborted) {
      let delayMs: number;
      try {
        if (saved === null && position === null) await loadCheckpoint();
        const connection = new AbortController();
        const onStop = (): void => connection.abort(signal.reason);
        signal.addEventListener('abort', onStop, { once: true });
        // close() may have come while the checkpoint was loading, before the listener existed.
        if (signal.aborted) onStop();
        try {
          delayMs = (await connect(session(connection.signal))).reconnectAfterMs ?? 0;
        } finally {
          signal.removeEventListener('abort', onStop);
          connection.abort();
        }
      } catch (error) {
        if (signal.aborted) return;
        delayMs = await afterFailure(error);
      }
      await pause(delayMs, signal);
    }
  };

  const running = run().then(
    () => life.stopped(),
    (error: unknown) => life.failed(error),
  );
  return {
    get cursor() {
      return saved;
    },
    done: life.done,
    async close() {
      controller.abort(new Error('the consumer was closed'));
      await running;
    },
  };
}
