import { setTimeout as sleep } from 'node:timers/promises';
import pRetry, { AbortError } from 'p-retry';
import { LeaseLostError } from '../errors.ts';
import type { OutboxEvent, Position } from '../event.ts';
import { isMutant } from '../mutants.ts';
import { comparePositions, maxPosition } from '../position.ts';
import { readPartition } from '../read.ts';
import { retry, type SendOutcome } from '../transport.ts';
import type { ResolvedRelayOptions } from './options.ts';
import type { AttemptError, Lease, RelayStore } from './store.ts';

/** A read cursor that moved only past filtered-out rows is saved at most this often. */
const idleSaveIntervalMs = 5_000;

class RetryableSend extends Error {
  readonly retryAfterMs: number | undefined;
  constructor(error: Error, retryAfterMs: number | undefined) {
    super(error.message, { cause: error });
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * Relays one leased partition: read a page after the cursor, send it, move the cursor past the
 * delivered prefix, repeat; sleep when caught up until a NOTIFY or the poll interval wakes it.
 * Order within the partition is kept: a failing event holds back the ones after it until it is
 * delivered or dead-lettered.
 */
export class PartitionRunner {
  readonly lease: Lease;
  readonly #options: ResolvedRelayOptions;
  readonly #store: RelayStore;
  readonly #abort = new AbortController();
  /** Everything before this position has been handled (may be ahead of the saved cursor). */
  #readFrom: Position;
  #saved: Position;
  #savedAt = Date.now();
  #stopping = false;
  #wake: (() => void) | undefined;
  #woken = false;
  #done: Promise<void> = Promise.resolve();

  constructor(options: ResolvedRelayOptions, store: RelayStore, lease: Lease) {
    this.#options = options;
    this.#store = store;
    this.lease = lease;
    this.#readFrom = lease.cursor;
    this.#saved = lease.cursor;
  }

  get partition(): number {
    return this.lease.partition;
  }

  start(): void {
    this.#done = this.#run().catch((error: unknown) => this.#report(error));
  }

  /** New events may be waiting: look now instead of at the next poll. */
  wake(): void {
    this.#woken = true;
    this.#wake?.();
  }

  /** Lets the batch in flight finish (and its cursor move), then stops; aborts it after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    this.wake();
    const timer = setTimeout(() => this.#abort.abort(new Error('relay stopping')), graceMs);
    try {
      await this.#done;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The lease is gone: stop at once; whatever is in flight cannot move the cursor anyway. */
  abandon(): void {
    this.#stopping = true;
    this.#abort.abort(new LeaseLostError(this.#options.name, this.partition));
    this.wake();
  }

  get #running(): boolean {
    return !this.#stopping && !this.#abort.signal.aborted;
  }

  async #run(): Promise<void> {
    const { database, schema, batchSize, topics, tenant, pollIntervalMs } = this.#options;
    while (this.#running) {
      this.#woken = false;
      let page;
      try {
        page = await readPartition(database, schema, { partition: this.partition, after: this.#readFrom, limit: batchSize, topics, tenant });
        if (page.events.length > 0 && !(await this.#deliver(page.events, page.scannedTo))) return;
        this.#readFrom = maxPosition(this.#readFrom, page.scannedTo);
        if (page.events.length === batchSize) continue;
        await this.#saveIdleProgress();
      } catch (error) {
        if (error instanceof LeaseLostError || !this.#running) {
          this.#lost(error);
          return;
        }
        this.#report(error);
        // The database or the transport is failing in a way the send retries do not cover: start
        // again from the saved cursor after a pause.
        this.#readFrom = this.#saved;
        await this.#idle(this.#options.retry.minDelayMs * 10);
        continue;
      }
      await this.#idle(pollIntervalMs);
    }
    // Stopping on purpose: keep how far filtered-out rows were passed, so the next owner skips them.
    if (!this.#abort.signal.aborted) await this.#saveIdleProgress(true).catch(() => {});
  }

  /** Returns false when the partition must stop (stopping, or the lease is gone). */
  async #deliver(events: readonly OutboxEvent[], scannedTo: Position): Promise<boolean> {
    const { retry: policy, onFailure } = this.#options;
    let pending = events;
    while (pending.length > 0) {
      if (!this.#running) return false;
      const attempts: AttemptError[] = [];
      const batch = pending;
      try {
        pending = await pRetry(() => this.#attempt(batch, scannedTo, attempts), {
          retries: onFailure === 'block' ? Number.POSITIVE_INFINITY : policy.retries,
          factor: policy.factor,
          minTimeout: policy.minDelayMs,
          maxTimeout: policy.maxDelayMs,
          randomize: true,
          signal: this.#abort.signal,
          shouldRetry: ({ error }) => this.#running && !(error instanceof LeaseLostError),
          onFailedAttempt: async ({ error, retryDelay }) => {
            const hint = error instanceof RetryableSend ? error.retryAfterMs : undefined;
            if (hint !== undefined && hint > retryDelay && this.#running) {
              await sleep(hint - retryDelay, undefined, { signal: this.#abort.signal }).catch(() => {});
            }
          },
        });
      } catch (error) {
        if (error instanceof LeaseLostError || !this.#running) return this.#lost(error);
        if (attempts.length === 0) throw error;
        const head = batch[0]!;
        await this.#store.deadLetter(this.lease, head, attempts);
        this.#readFrom = this.#saved = head.position;
        this.#options.onEvent({ type: 'dead-letter', partition: this.partition, eventId: head.eventId, error: asError(error) });
        pending = batch.slice(1);
      }
    }
    return true;
  }

  /** One send of `batch`: moves the cursor past the delivered prefix and returns the rest. */
  async #attempt(batch: readonly OutboxEvent[], scannedTo: Position, attempts: AttemptError[]): Promise<readonly OutboxEvent[]> {
    if (isMutant('ack-before-send')) await this.#save(batch.at(-1)!.position);
    const outcomes = await this.#send(batch);
    let k = 0;
    while (k < batch.length && outcomes[k]!.status === 'delivered') k++;
    if (k > 0) {
      const rest = batch.slice(k);
      const last = batch[k - 1]!.position;
      await this.#save(rest.length === 0 ? maxPosition(last, scannedTo) : last);
      this.#options.onEvent({ type: 'delivered', partition: this.partition, count: k });
      return rest;
    }
    const head = outcomes[0] as Exclude<SendOutcome, { status: 'delivered' }>;
    attempts.push({ attempt: attempts.length + 1, at: new Date().toISOString(), message: head.error.message });
    const event = batch[0]!;
    this.#options.onEvent({ type: 'retry', partition: this.partition, eventId: event.eventId, attempt: attempts.length, error: head.error });
    if (head.status === 'failed' && this.#options.onFailure !== 'block') throw new AbortError(head.error);
    throw new RetryableSend(head.error, head.status === 'retry' ? head.retryAfterMs : undefined);
  }

  async #send(batch: readonly OutboxEvent[]): Promise<readonly SendOutcome[]> {
    try {
      const outcomes = await this.#options.transport.send(batch, this.#abort.signal);
      if (outcomes.length !== batch.length) {
        throw new Error(`transport ${this.#options.transport.name} returned ${outcomes.length} outcomes for ${batch.length} events`);
      }
      return outcomes;
    } catch (error) {
      if (this.#abort.signal.aborted) throw this.#abort.signal.reason;
      const outcome = retry(error);
      return batch.map(() => outcome);
    }
  }

  async #save(to: Position): Promise<void> {
    await this.#store.advance(this.lease, to);
    this.#readFrom = maxPosition(this.#readFrom, to);
    this.#saved = to;
    this.#savedAt = Date.now();
  }

  async #saveIdleProgress(now = false): Promise<void> {
    if (comparePositions(this.#readFrom, this.#saved) <= 0) return;
    if (!now && Date.now() - this.#savedAt < idleSaveIntervalMs) return;
    await this.#save(this.#readFrom);
  }

  async #idle(ms: number): Promise<void> {
    if (this.#woken || !this.#running) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
    this.#wake = undefined;
  }

  #lost(error: unknown): false {
    if (error instanceof LeaseLostError) this.#options.onEvent({ type: 'lease-lost', partition: this.partition });
    return false;
  }

  #report(error: unknown): void {
    this.#options.onEvent({ type: 'error', partition: this.partition, error: asError(error) });
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
