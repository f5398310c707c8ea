import type { OutboxEvent, SendOutcome, Transport } from '@tidings/outbox';
import { setTimeout as sleep } from 'node:timers/promises';

/** What one or more sends reported, event by event, as the relay would read it. */
export interface SendRecord {
  readonly delivered: OutboxEvent[];
  /** Reported `retry`, `unavailable` or `failed`, or part of a send that threw. */
  readonly undelivered: OutboxEvent[];
  /**
   * The first event not delivered of a send, when reported `retry` or `failed`: the relay counts
   * that against the event (toward its dead letter). An outage must never land here.
   */
  readonly counted: OutboxEvent[];
  /** Reported `failed`: the relay would dead-letter these at once. */
  readonly failed: OutboxEvent[];
  /** A few distinct error messages, for failure messages. */
  readonly errors: string[];
}

export function emptyRecord(): SendRecord {
  return { delivered: [], undelivered: [], counted: [], failed: [], errors: [] };
}

/** Adds `from` into `into` and returns `into`. */
export function mergeRecord(into: SendRecord, from: SendRecord): SendRecord {
  into.delivered.push(...from.delivered);
  into.undelivered.push(...from.undelivered);
  into.failed.push(...from.failed);
  into.counted.push(...from.counted);
  for (const message of from.errors) noteError(into, message);
  return into;
}

/**
 * Sends one batch and sorts its events by outcome. A send that throws leaves the whole batch
 * undelivered, as the relay treats it. Breaking the `Transport` contract (not one outcome per
 * event, unknown status, a failure without an Error) throws at once.
 */
export async function sendAndRecord(transport: Transport, batch: readonly OutboxEvent[], signal: AbortSignal): Promise<SendRecord> {
  let outcomes: readonly SendOutcome[];
  try {
    outcomes = await transport.send(batch, signal);
  } catch (error) {
    const record = emptyRecord();
    record.undelivered.push(...batch);
    noteError(record, `send threw: ${describeError(error)}`);
    return record;
  }
  return recordOutcomes(batch, outcomes);
}

/** Sorts the events of `batch` by the outcomes a send resolved with, checking the `Transport` contract. */
export function recordOutcomes(batch: readonly OutboxEvent[], outcomes: readonly SendOutcome[]): SendRecord {
  const record = emptyRecord();
  if (!Array.isArray(outcomes) || outcomes.length !== batch.length) {
    const got = Array.isArray(outcomes) ? `${outcomes.length} outcomes` : String(outcomes);
    throw new Error(`send() must resolve with one outcome per event, in batch order; got ${got} for a batch of ${batch.length}`);
  }
  for (let i = 0; i < batch.length; i++) {
    const outcome = outcomes[i] as SendOutcome | undefined;
    const event = batch[i]!;
    if (outcome?.status === 'delivered') {
      record.delivered.push(event);
      continue;
    }
    if (outcome?.status !== 'retry' && outcome?.status !== 'unavailable' && outcome?.status !== 'failed') {
      throw new Error(
        `send() outcome #${i} (event ${event.eventId}) has status ${JSON.stringify((outcome as { status?: unknown } | undefined)?.status)}; expected delivered, retry, unavailable or failed`,
      );
    }
    if (!(outcome.error instanceof Error)) {
      throw new Error(`send() outcome #${i} (event ${event.eventId}) is "${outcome.status}" without an Error saying why`);
    }
    if (record.undelivered.length === 0 && outcome.status !== 'unavailable') record.counted.push(event);
    record.undelivered.push(event);
    if (outcome.status === 'failed') record.failed.push(event);
    noteError(record, `${outcome.status}: ${describeError(outcome.error)}`);
  }
  return record;
}

/** Splits `events` into batches of at most `size`, keeping their order. */
export function chunk<T>(events: readonly T[], size: number): T[][] {
  const batches: T[][] = [];
  for (let i = 0; i < events.length; i += size) batches.push(events.slice(i, i + size));
  return batches;
}

/** Throws, naming outcomes and errors, unless every event of `record` was delivered. */
export function expectAllDelivered(record: SendRecord, what: string): void {
  if (record.undelivered.length === 0) return;
  const total = record.delivered.length + record.undelivered.length;
  throw new Error(
    `${what}: ${record.undelivered.length} of ${total} events were not reported delivered by a healthy destination ` +
      `(${record.failed.length} of them as permanent failures). Errors: ${record.errors.join(' | ') || '-'}`,
  );
}

/** Throws, naming the ids, if `record` reports any event delivered. */
export function expectNoneDelivered(record: SendRecord, what: string): void {
  if (record.delivered.length === 0) return;
  const ids = record.delivered.slice(0, 5).map((event) => event.eventId);
  throw new Error(
    `${what}: send reported ${record.delivered.length} events delivered (${ids.join(', ')}${record.delivered.length > 5 ? ', …' : ''}); ` +
      'the relay would move its cursor past events the destination never acknowledged.',
  );
}

/** Throws, naming the ids, if `record` counts an outage against an event (`retry` or `failed` instead of `unavailable`). */
export function expectNothingCounted(record: SendRecord, what: string): void {
  if (record.counted.length === 0) return;
  const ids = record.counted.slice(0, 5).map((event) => event.eventId);
  throw new Error(
    `${what}: send reported ${ids.join(', ')} as refused (retry or failed) rather than "unavailable"; the relay would count ` +
      `the outage against those events and dead-letter them once their retries ran out. Errors: ${record.errors.join(' | ') || '-'}`,
  );
}

export interface DeliverAllOptions {
  readonly batchSize: number;
  /** Give up (and throw) when events are still undelivered after this long. */
  readonly timeoutMs: number;
  /** Deadline of each send. */
  readonly sendTimeoutMs: number;
}

/**
 * Plays the relay after a fault: resends whatever is not delivered yet, in order and in batches,
 * backing off between rounds, until everything is delivered. A permanent failure of a valid event
 * or running out of time throws with the last errors.
 */
export async function deliverAll(transport: Transport, events: readonly OutboxEvent[], options: DeliverAllOptions): Promise<SendRecord> {
  const total = emptyRecord();
  const deadline = Date.now() + options.timeoutMs;
  let pending = events;
  for (let round = 0; pending.length > 0; round++) {
    if (round > 0) {
      if (Date.now() >= deadline) {
        throw new Error(
          `${pending.length} of ${events.length} events were still not delivered after resending them for ${options.timeoutMs} ms ` +
            `(${round} rounds). Last errors: ${total.errors.slice(-3).join(' | ') || '-'}`,
        );
      }
      await sleep(Math.min(50 * 2 ** round, 1_000));
    }
    const next: OutboxEvent[] = [];
    for (const batch of chunk(pending, options.batchSize)) {
      const record = await sendAndRecord(transport, batch, AbortSignal.timeout(options.sendTimeoutMs));
      if (record.failed.length > 0) {
        throw new Error(
          `send reported ${record.failed.length} valid events as permanently failed (first: ${record.failed[0]!.eventId}); ` +
            `after a fault, failures must be retryable. Errors: ${record.errors.join(' | ')}`,
        );
      }
      mergeRecord(total, record);
      next.push(...record.undelivered);
    }
    pending = next;
  }
  return total;
}

export type Settled<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };

/** Waits for `promise` at most `ms` and reports how it settled; throws `message` if it is still pending then. */
export function settleWithin<T>(promise: Promise<T>, ms: number, message: string): Promise<Settled<T>> {
  const settled = promise.then(
    (value): Settled<T> => ({ ok: true, value }),
    (error: unknown): Settled<T> => ({ ok: false, error }),
  );
  return within(settled, ms, message);
}

/** `promise`, unless it is still pending after `ms`: then throws `message`. */
export async function within<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${message} (still pending after ${ms} ms)`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function noteError(record: SendRecord, message: string): void {
  if (record.errors.length < 5 && !record.errors.includes(message)) record.errors.push(message);
}

function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
