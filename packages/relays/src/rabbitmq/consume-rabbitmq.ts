import { inbox, type Inbox } from '@tidings/inbox';
import type { ConsumeMessage } from 'amqplib';
import { asError, Backoff, pause } from '../shared/backoff.ts';
import { amqplib } from './connection.ts';
import {
  resolveConsumerOptions,
  retryQueueName,
  type ConsumeRabbitmqOptions,
  type RabbitmqConsumerEvent,
  type ResolvedConsumerOptions,
} from './consumer-options.ts';
import { declareConsumerTopology } from './consumer-topology.ts';
import { InvalidMessageError, RabbitmqConnectionError, type DeadLetterReason } from './errors.ts';
import { KeyLanes } from './key-lanes.ts';
import { amqpHeaders, decodeMessage } from './message-codec.ts';
import { lifecycle, type Consumer as RunningConsumer, type RabbitmqDelivery, type ReceivedEvent as AnyReceivedEvent } from '../shared/consumer.ts';
import { copyMessage, describeError } from './message-copy.ts';
import { ConfirmLink, type Confirmation, type LinkCounters } from './confirm-link.ts';
import { abortedByHandler } from '../shared/handler-fault.ts';
import { runHandler } from '../shared/handler-span.ts';
import { runInTransaction, type TransactionSource } from '../shared/transaction-source.ts';

type ReceivedEvent = AnyReceivedEvent<RabbitmqDelivery>;

/** A running consumer: `close()` stops taking messages, lets the handlers in progress finish and ack, then disconnects. */
export interface RabbitmqConsumer extends RunningConsumer {
  readonly queue: string;
}

/**
 * Consumes a RabbitMQ queue and applies each event exactly once through the inbox.
 *
 * For each message: the event is decoded (a missing message id or a body that is not JSON goes
 * to the dead-letter exchange with the reason in `x-tidings-dead-letter-reason`); the handler runs
 * in one database transaction together with the inbox mark of (consumer, event id), so a
 * redelivered duplicate is skipped; the message is acked only after that transaction committed.
 * A crash between commit and ack means a redelivery, which the inbox skips.
 *
 * A handler that throws is retried after a delay: the message is republished (with publisher
 * confirms) to a retry queue whose TTL sends it back to this queue, then acked, with its attempt
 * count in `x-tidings-attempt`. After `retry.attempts` runs it goes to the dead-letter exchange
 * with the last error. A handler that catches a database error and returns counts as a failed
 * attempt too: its transaction was rolled back, so nothing is acked that did not commit. Failures
 * that are not the handler's (the database is down, the commit's outcome is unknown) do not use up
 * attempts: the event is tried again after a pause, still holding its key, so no later event of
 * that key overtakes it.
 * Lost connections are reopened with backoff and consumption resumes.
 *
 * Up to `prefetch` messages are handled at once, one at a time per key (`x-tidings-key`), so the
 * events of a key are applied in queue order; a retried message comes back after its delay,
 * behind the later events of its key.
 *
 * @example
 * import { consumeRabbitmq } from '@tidings/relays/rabbitmq';
 *
 * const consumer = await consumeRabbitmq({
 *   url: process.env.RABBITMQ_URL!,
 *   queue: 'billing.orders',
 *   bindings: ['orders.*'],
 *   consumer: 'billing',
 *   database: db, // kysely: the handler gets a Transaction
 *   handler: async (trx, event) => {
 *     await trx.insertInto('invoices').values({ order_id: (event.payload as { id: string }).id }).execute();
 *   },
 * });
 * // on shutdown
 * await consumer.close();
 */
export async function consumeRabbitmq<Source extends TransactionSource>(options: ConsumeRabbitmqOptions<Source>): Promise<RabbitmqConsumer> {
  amqplib();
  const consumer = new Consumer(resolveConsumerOptions(options) as unknown as ResolvedConsumerOptions<TransactionSource>);
  await consumer.start();
  return consumer;
}

/** A failure thrown by the handler itself, as opposed to the database or the inbox around it. */
class HandlerFailed {
  readonly error: unknown;
  constructor(error: unknown) {
    this.error = error;
  }
}

class Consumer implements RabbitmqConsumer {
  readonly queue: string;
  readonly #options: ResolvedConsumerOptions<TransactionSource>;
  readonly #inbox: Inbox;
  readonly #lanes = new KeyLanes();
  readonly #tasks = new Set<Promise<void>>();
  readonly #counters: LinkCounters = { published: 0, acked: 0, returned: 0, nacked: 0, lost: 0, drainWaits: 0 };
  readonly #reconnectBackoff: Backoff;
  readonly #failureBackoff: Backoff;
  /** Aborted when close() starts: pauses end at once. */
  readonly #stopping = new AbortController();
  #link: ConfirmLink | undefined;
  #consumerTag: string | undefined;
  #reconnecting: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  readonly #life = lifecycle();
  readonly done = this.#life.done;

  constructor(options: ResolvedConsumerOptions<TransactionSource>) {
    this.#options = options;
    this.queue = options.queue;
    this.#inbox = inbox({ consumer: options.consumer, schema: options.schema });
    this.#reconnectBackoff = new Backoff(options.reconnect.minDelayMs, options.reconnect.maxDelayMs);
    this.#failureBackoff = new Backoff(options.reconnect.minDelayMs, options.reconnect.maxDelayMs);
  }

  async start(): Promise<void> {
    await this.#open();
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stopping.abort();
      const link = this.#link;
      if (link && !link.broken && this.#consumerTag) await link.channel.cancel(this.#consumerTag).catch(() => {});
      await this.#reconnecting;
      // Messages already delivered to this process are still handled (and acked).
      while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
      await this.#link?.close(5_000);
      this.#life.stopped();
    })();
    return this.#closing;
  }

  async #open(): Promise<void> {
    const link = await ConfirmLink.open(this.#options.connection, [], this.#counters, this.#stopping.signal);
    try {
      const channel = link.channel;
      await declareConsumerTopology(channel, this.#options);
      await channel.prefetch(this.#options.prefetch);
      const { consumerTag } = await channel.consume(this.queue, (message) => {
        if (message) this.#track(this.#receive(link, message));
        else link.destroy(new RabbitmqConnectionError('connection-lost', `RabbitMQ cancelled the consumer of queue "${this.queue}"; was the queue deleted?`));
      });
      if (this.#closing) throw new Error('closing');
      this.#link = link;
      this.#consumerTag = consumerTag;
    } catch (error) {
      link.destroy(error instanceof Error ? error : new Error(String(error)));
      throw error;
    }
    this.#emit({ type: 'connected' });
    void link.ended.then((reason) => this.#lost(link, reason));
  }

  #lost(link: ConfirmLink, reason: Error): void {
    if (this.#link !== link || this.#closing) return;
    this.#link = undefined;
    this.#emit({ type: 'disconnected', error: reason });
    this.#reconnecting = this.#reconnect().finally(() => {
      this.#reconnecting = undefined;
    });
  }

  /** The observer, wrapped: what it throws is ignored. */
  #emit(event: RabbitmqConsumerEvent): void {
    this.#options.onEvent(event);
  }

  async #reconnect(): Promise<void> {
    while (!this.#closing) {
      await pause(this.#reconnectBackoff.next(), this.#stopping.signal);
      if (this.#closing) return;
      try {
        await this.#open();
        this.#reconnectBackoff.reset();
        return;
      } catch (error) {
        if (!this.#closing) this.#emit({ type: 'error', eventId: null, error: asError(error) });
      }
    }
  }

  #track(task: Promise<void>): void {
    const settled = task.catch((error: unknown) => this.#emit({ type: 'error', eventId: null, error: asError(error) }));
    this.#tasks.add(settled);
    void settled.then(() => this.#tasks.delete(settled));
  }

  async #receive(link: ConfirmLink, message: ConsumeMessage): Promise<void> {
    let event: ReceivedEvent;
    try {
      event = decodeMessage(message, this.queue);
    } catch (error) {
      const reason = error instanceof InvalidMessageError ? error.reason : 'invalid-json';
      return this.#deadLetter(link, message, null, reason, asError(error), undefined);
    }
    await this.#lanes.run(event.key, () => this.#apply(link, message, event));
  }

  /**
   * Applies one event; runs inside its key's lane, so nothing of the same key starts before this
   * ends. A failure that is not the handler's (the database is unreachable, the commit's outcome
   * is unknown) is retried here, after a pause, while the lane stays held: handing the message
   * back to the queue would let the next event of its key, already prefetched, be applied first.
   */
  async #apply(link: ConfirmLink, message: ConsumeMessage, event: ReceivedEvent): Promise<void> {
    const { database, handler } = this.#options;
    for (;;) {
      let applied: boolean;
      try {
        const result = await runInTransaction(database, (trx) =>
          this.#inbox.handle(trx, event, async (trx) => {
            try {
              return await runHandler(this.#options.consumer, event, () => handler(trx, event));
            } catch (error) {
              throw new HandlerFailed(error);
            }
          }),
        );
        applied = result.applied;
      } catch (error) {
        if (error instanceof HandlerFailed) return this.#retryLater(link, message, event, error.error);
        // The handler returned, but a statement in it had failed and its error was caught: the
        // transaction rolled back. That is the handler's failure, counted like a throw.
        if (abortedByHandler(error)) return this.#retryLater(link, message, event, error);
        // The database or the inbox failed, not the handler: no attempt is used up.
        this.#emit({ type: 'error', eventId: event.eventId, error: asError(error) });
        await pause(this.#failureBackoff.next(), this.#stopping.signal);
        // Closing, or the channel is gone: RabbitMQ hands the unacked message out again.
        if (this.#stopping.signal.aborted || link.broken) return;
        continue;
      }
      this.#failureBackoff.reset();
      this.#emit({ type: 'committed', eventId: event.eventId, attempt: event.attempt, applied });
      settle(link, message, 'ack');
      return;
    }
  }

  async #retryLater(link: ConfirmLink, message: ConsumeMessage, event: ReceivedEvent, failure: unknown): Promise<void> {
    const { attempts, delays } = this.#options;
    const error = asError(failure);
    if (event.attempt >= attempts) return this.#deadLetter(link, message, event.eventId, 'handler-failed', error, event.attempt);
    const delayMs = delays[Math.min(event.attempt, delays.length) - 1]!;
    const copy = copyMessage(message, { [amqpHeaders.attempt]: event.attempt + 1, [amqpHeaders.lastError]: describeError(error) });
    const confirmation = await link.publish('', retryQueueName(this.queue, delayMs), copy);
    if (confirmation.kind !== 'ack') {
      this.#emit({ type: 'error', eventId: event.eventId, error: republishError('schedule a retry of', event.eventId, confirmation) });
      return this.#requeueAfterPause(link, message);
    }
    settle(link, message, 'ack');
    this.#emit({ type: 'retry-scheduled', eventId: event.eventId, attempt: event.attempt, delayMs, error });
  }

  async #deadLetter(
    link: ConfirmLink,
    message: ConsumeMessage,
    eventId: string | null,
    reason: DeadLetterReason,
    error: Error,
    attempt: number | undefined,
  ): Promise<void> {
    const copy = copyMessage(message, {
      [amqpHeaders.deadLetterReason]: reason,
      [amqpHeaders.error]: describeError(error),
      [amqpHeaders.queue]: this.queue,
      [amqpHeaders.attempt]: attempt,
    });
    const confirmation = await link.publish(this.#options.deadLetterExchange, this.queue, copy);
    if (confirmation.kind !== 'ack') {
      this.#emit({ type: 'error', eventId, error: republishError('dead-letter', eventId ?? 'without a message id', confirmation) });
      return this.#requeueAfterPause(link, message);
    }
    settle(link, message, 'ack');
    this.#emit({ type: 'dead-lettered', eventId, reason, error });
  }

  /** Gives the message back to the queue, after a pause so that a failing database is not hammered. */
  async #requeueAfterPause(link: ConfirmLink, message: ConsumeMessage): Promise<void> {
    await pause(this.#failureBackoff.next(), this.#stopping.signal);
    settle(link, message, 'requeue');
  }
}

/** Acks or requeues on the channel that delivered the message; a closed channel means RabbitMQ redelivers it anyway. */
function settle(link: ConfirmLink, message: ConsumeMessage, how: 'ack' | 'requeue'): void {
  if (link.broken) return;
  try {
    if (how === 'ack') link.channel.ack(message);
    else link.channel.nack(message, false, true);
  } catch {
    // The channel closed in the meantime.
  }
}

function republishError(what: string, eventId: string, confirmation: Exclude<Confirmation, { kind: 'ack' }>): Error {
  const why =
    confirmation.kind === 'returned'
      ? `RabbitMQ returned it as unroutable (${confirmation.reply}); is a queue bound to the dead-letter exchange?`
      : confirmation.kind === 'nack'
        ? 'RabbitMQ refused it (basic.nack)'
        : `the connection was lost (${confirmation.error.message})`;
  return new RabbitmqConnectionError('connection-lost', `could not ${what} message ${eventId}: ${why}. It was returned to the queue.`);
}
