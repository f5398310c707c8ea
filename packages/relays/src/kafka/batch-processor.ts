import { CheckpointConflictError, inbox, type Inbox } from '@tidings/inbox';
import { asError, Backoff, pause } from '../shared/backoff.ts';
import type { PartitionBatch } from './consumer-client.ts';
import type { ResolvedConsumerOptions, TopicPartition } from './consumer-options.ts';
import type { DeadLetterWriter, KafkaDeadLetterReason } from './dead-letter-writer.ts';
import { decodeRecord, type KafkaEvent, type KafkaMessageLike } from './record-codec.ts';
import { abortedByHandler } from '../shared/handler-fault.ts';
import { runHandler } from '../shared/handler-span.ts';
import { readThrough, runInTransaction, type TransactionSource } from '../shared/transaction-source.ts';

/** A record of a batch, read as an event or not readable. */
type Item = { readonly message: KafkaMessageLike; readonly event: KafkaEvent } | { readonly message: KafkaMessageLike; readonly invalid: Error };
type Readable = Extract<Item, { event: KafkaEvent }>;

/** A failure thrown by the handler itself, as opposed to the database or the inbox around it. */
class HandlerFailed {
  readonly eventId: string;
  readonly error: unknown;
  constructor(eventId: string, error: unknown) {
    this.eventId = eventId;
    this.error = error;
  }
}

/** The checkpoint source of a partition, as the inbox documents it: `orders/3`. */
export function checkpointSource(tp: TopicPartition): string {
  return `${tp.topic}/${tp.partition}`;
}

/**
 * Applies the batches a consumer client fetches, partition by partition: records in offset order,
 * up to `batchSize` per database transaction; the Kafka offset is committed only after that transaction
 * committed. Mode `inbox` marks each event id in the transaction; mode `checkpoint` stores the
 * partition's next offset there instead (compare-and-set), and moves consumption to the stored
 * offset whenever Kafka's position differs from it.
 *
 * Every method returns false, or rethrows a commit error that means the member must rejoin, when
 * the batch must not be handled further: the consumer is stopping, the partition was sought elsewhere, or it moved.
 */
export class BatchProcessor<Source extends TransactionSource> {
  readonly #options: ResolvedConsumerOptions<Source>;
  readonly #inbox: Inbox;
  readonly #seek: (tp: TopicPartition, offset: string) => void;
  readonly #deadLetters: DeadLetterWriter | undefined;
  readonly #stopping: AbortSignal;
  /** Checkpoint mode: the next offset to apply per partition, as stored (null: none yet). */
  readonly #positions = new Map<string, string | null>();
  /** Partitions moved to their checkpoint since they were assigned. */
  readonly #sought = new Set<string>();

  constructor(
    options: ResolvedConsumerOptions<Source>,
    seek: (tp: TopicPartition, offset: string) => void,
    deadLetters: DeadLetterWriter | undefined,
    stopping: AbortSignal,
  ) {
    this.#options = options;
    this.#inbox = inbox({ consumer: options.consumer, schema: options.schema });
    this.#seek = seek;
    this.#deadLetters = deadLetters;
    this.#stopping = stopping;
  }

  /** After each (re)join: what we knew of positions may be stale; in checkpoint mode, move each partition to its checkpoint at once. */
  assigned(partitions: readonly TopicPartition[]): void {
    this.#positions.clear();
    this.#sought.clear();
    if (this.#options.mode !== 'checkpoint') return;
    void (async () => {
      for (const tp of partitions) {
        try {
          const position = await this.#load(tp);
          if (position !== null && !this.#sought.has(checkpointSource(tp))) this.#seekTo(tp, position);
        } catch (error) {
          // The first batch of the partition loads it again.
          this.#options.onEvent({ type: 'error', ...tp, error: asError(error) });
        }
      }
    })();
  }

  async process(payload: PartitionBatch): Promise<void> {
    if (payload.messages.length === 0 || this.#ended(payload)) return;
    const tp = { topic: payload.topic, partition: payload.partition };
    let messages = payload.messages;
    if (this.#options.mode === 'checkpoint') {
      const position = await this.#position(payload, tp);
      if (position === undefined) return;
      if (position !== null) {
        const from = BigInt(position);
        const first = BigInt(messages[0]!.offset);
        const last = BigInt(messages.at(-1)!.offset);
        // Kafka's position is not the database's (committed offsets lost or behind): the database
        // wins. After one seek a later first offset is a gap (compaction, aborted transactions).
        if ((from < first && !this.#sought.has(checkpointSource(tp))) || from > last + 1n) return this.#seekTo(tp, position);
        messages = messages.filter((message) => BigInt(message.offset) >= from);
        if (messages.length === 0) {
          // Applied before, but Kafka's committed offset lags (a crash came between the two commits).
          await this.#committed(payload, tp, String(last));
          return;
        }
      }
    }
    for (let at = 0; at < messages.length; at += this.#options.batchSize) {
      if (!(await this.#applyChunk(payload, tp, messages.slice(at, at + this.#options.batchSize)))) return;
    }
  }

  async #applyChunk(payload: PartitionBatch, tp: TopicPartition, chunk: readonly KafkaMessageLike[]): Promise<boolean> {
    const items = chunk.map((message): Item => {
      try {
        return { message, event: decodeRecord(tp.topic, tp.partition, message) };
      } catch (error) {
        return { message, invalid: asError(error) };
      }
    });
    for (let start = 0; start < items.length; ) {
      const item = items[start]!;
      if ('invalid' in item) {
        if (!(await this.#poison(payload, tp, item.message, null, 'invalid-record', item.invalid, 1))) return false;
        start++;
        continue;
      }
      let end = start + 1;
      while (end < items.length && !('invalid' in items[end]!)) end++;
      if (!(await this.#applyRun(payload, tp, items.slice(start, end) as Readable[]))) return false;
      start = end;
    }
    return true;
  }

  /** Applies `run` in one transaction; when the handler fails, record by record, retrying the failing one. */
  async #applyRun(payload: PartitionBatch, tp: TopicPartition, run: readonly Readable[], failedBefore = 0): Promise<boolean> {
    const { onEvent, minDelayMs, maxDelayMs, attempts } = this.#options;
    const failures = new Backoff(minDelayMs, maxDelayMs);
    let attempt = failedBefore;
    for (;;) {
      if (this.#ended(payload)) return false;
      let applied: number;
      try {
        applied = await this.#transaction(tp, run, attempt + 1);
      } catch (error) {
        // A handler that caught a database error aborted the transaction: its failure, like a throw.
        if (error instanceof HandlerFailed || abortedByHandler(error)) {
          if (run.length > 1) {
            // The record whose handler failed has had its first run; the others run as if for the first time.
            const failed = error instanceof HandlerFailed ? error.eventId : undefined;
            for (const one of run) if (!(await this.#applyRun(payload, tp, [one], one.event.eventId === failed ? 1 : 0))) return false;
            return true;
          }
          attempt++;
          const cause = asError(error instanceof HandlerFailed ? error.error : error);
          const { message, event } = run[0]!;
          if (this.#deadLetters && attempt >= attempts) return this.#poison(payload, tp, message, event.eventId, 'handler-failed', cause, attempt);
          const delayMs = failures.next();
          onEvent({ type: 'retry-scheduled', ...tp, offset: message.offset, attempt, delayMs, error: cause });
          if (!(await this.#wait(payload, delayMs))) return false;
          continue;
        }
        if (error instanceof CheckpointConflictError) return this.#conflict(payload, tp);
        // The database or the inbox failed, not the handler: no attempt is used up.
        onEvent({ type: 'error', ...tp, error: asError(error) });
        if (!(await this.#wait(payload, failures.next()))) return false;
        continue;
      }
      const firstOffset = run[0]!.message.offset;
      const lastOffset = run.at(-1)!.message.offset;
      onEvent({ type: 'committed', ...tp, firstOffset, lastOffset, records: run.length, applied });
      return this.#committed(payload, tp, lastOffset);
    }
  }

  /**
   * One database transaction: the handler for each event, then the inbox marks or the checkpoint.
   * Resolves with how many handlers ran. `attempt` is the run number of a single record retried.
   */
  async #transaction(tp: TopicPartition, run: readonly Readable[], attempt: number): Promise<number> {
    const { database, handler, mode } = this.#options;
    const source = checkpointSource(tp);
    const next = String(BigInt(run.at(-1)!.message.offset) + 1n);
    const applied = await runInTransaction(database, async (trx) => {
      let count = 0;
      for (const item of run) {
        const event = attempt === 1 ? item.event : { ...item.event, attempt };
        const apply = async (t: typeof trx): Promise<void> => {
          try {
            await runHandler(this.#options.consumer, event, () => handler(t, event));
          } catch (error) {
            throw new HandlerFailed(event.eventId, error);
          }
        };
        if (mode === 'checkpoint') {
          await apply(trx);
          count++;
        } else if ((await this.#inbox.handle(trx, event, apply)).applied) {
          count++;
        }
      }
      if (mode === 'checkpoint') await this.#inbox.saveCheckpoint(trx, { source, position: next, expected: this.#positions.get(source) ?? null });
      return count;
    });
    if (mode === 'checkpoint') this.#positions.set(source, next);
    return applied;
  }

  /**
   * A record that cannot be applied: copied to the dead-letter topic and passed over (in
   * checkpoint mode, the checkpoint moves past it in a transaction of its own). Without a
   * dead-letter topic its partition waits, reporting errors, until the consumer stops or the
   * partition moves.
   */
  async #poison(
    payload: PartitionBatch,
    tp: TopicPartition,
    message: KafkaMessageLike,
    eventId: string | null,
    reason: KafkaDeadLetterReason,
    error: Error,
    attempts: number,
  ): Promise<boolean> {
    const { onEvent, minDelayMs, maxDelayMs, mode, database } = this.#options;
    const backoff = new Backoff(minDelayMs, maxDelayMs);
    const writer = this.#deadLetters;
    if (!writer) {
      for (;;) {
        onEvent({ type: 'error', ...tp, error });
        if (!(await this.#wait(payload, backoff.next()))) return false;
      }
    }
    for (;;) {
      try {
        await writer.write(tp, message, reason, error, attempts);
        break;
      } catch (failure) {
        onEvent({ type: 'error', ...tp, error: new Error(`could not copy ${tp.topic}/${tp.partition}@${message.offset} to the dead-letter topic "${writer.topic}": ${asError(failure).message}`) });
        if (!(await this.#wait(payload, backoff.next()))) return false;
      }
    }
    if (mode === 'checkpoint') {
      const source = checkpointSource(tp);
      const next = String(BigInt(message.offset) + 1n);
      for (;;) {
        try {
          await runInTransaction(database, (trx) => this.#inbox.saveCheckpoint(trx, { source, position: next, expected: this.#positions.get(source) ?? null }));
          this.#positions.set(source, next);
          break;
        } catch (failure) {
          if (failure instanceof CheckpointConflictError) return this.#conflict(payload, tp);
          onEvent({ type: 'error', ...tp, error: asError(failure) });
          if (!(await this.#wait(payload, backoff.next()))) return false;
        }
      }
    }
    onEvent({ type: 'dead-lettered', ...tp, offset: message.offset, eventId, error });
    return this.#committed(payload, tp, message.offset);
  }

  /** Marks `lastOffset` done and commits the offset after it to Kafka; the database transaction is already committed. */
  async #committed(payload: PartitionBatch, tp: TopicPartition, lastOffset: string): Promise<boolean> {
    const backoff = new Backoff(this.#options.minDelayMs, this.#options.maxDelayMs);
    for (;;) {
      try {
        await payload.commit(lastOffset);
        break;
      } catch (error) {
        // Not fatal: the next owner starts at an older offset, and the inbox or the checkpoint skips
        // what was applied. But the offset is committed again until it holds, so that the group's
        // position does not stay behind the database until more records come.
        this.#options.onEvent({ type: 'error', ...tp, error: asError(error) });
        if (payload.mustRejoin(error)) throw error;
        if (!(await this.#wait(payload, backoff.next()))) return false;
      }
    }
    await payload.heartbeat();
    return !this.#ended(payload);
  }

  /** Another worker moved the checkpoint: resume from where it is now. */
  async #conflict(payload: PartitionBatch, tp: TopicPartition): Promise<false> {
    this.#positions.delete(checkpointSource(tp));
    const position = await this.#position(payload, tp);
    if (position !== undefined && position !== null) this.#seekTo(tp, position);
    return false;
  }

  /** The partition's checkpoint (null: none), loaded once per assignment; undefined when the batch ended while the database was failing. */
  async #position(payload: PartitionBatch, tp: TopicPartition): Promise<string | null | undefined> {
    const source = checkpointSource(tp);
    const backoff = new Backoff(this.#options.minDelayMs, this.#options.maxDelayMs);
    while (!this.#positions.has(source)) {
      try {
        const position = await this.#load(tp);
        if (!this.#positions.has(source)) this.#positions.set(source, position);
      } catch (error) {
        this.#options.onEvent({ type: 'error', ...tp, error: asError(error) });
        if (!(await this.#wait(payload, backoff.next()))) return undefined;
      }
    }
    return this.#positions.get(source);
  }

  #load(tp: TopicPartition): Promise<string | null> {
    return readThrough(this.#options.database, (db) => this.#inbox.loadCheckpoint(db, checkpointSource(tp)));
  }

  #seekTo(tp: TopicPartition, offset: string): void {
    this.#sought.add(checkpointSource(tp));
    this.#seek(tp, offset);
    this.#options.onEvent({ type: 'resumed', ...tp, offset });
  }

  /** Waits `ms`, heartbeating (a rebalance throws from there); false when the batch must end. */
  async #wait(payload: PartitionBatch, ms: number): Promise<boolean> {
    const until = Date.now() + ms;
    for (;;) {
      await pause(Math.min(Math.max(0, until - Date.now()), this.#options.heartbeatIntervalMs), this.#stopping);
      if (this.#ended(payload)) return false;
      await payload.heartbeat();
      if (Date.now() >= until) return true;
    }
  }

  #ended(payload: PartitionBatch): boolean {
    return this.#stopping.aborted || payload.isStale();
  }
}
