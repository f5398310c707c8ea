import { delivered, type SendOutcome } from '@tidings/outbox';
import type { EncodedRecord } from './record-codec.ts';

/**
 * One `send()` waiting for its records to be acknowledged. Its records go out in order, in one or
 * more requests; its outcomes are a delivered prefix, then `retry` (or `failed` for events that
 * could not be encoded).
 */
export class PendingSend {
  readonly records: readonly EncodedRecord[];
  /** One per event of the batch; those past `records` are already filled in. */
  readonly outcomes: (SendOutcome | undefined)[];
  /** Records handed to requests so far. */
  taken = 0;
  /** Records acknowledged so far: always a prefix of `records`. */
  acked = 0;
  #settled = false;
  readonly #resolve: (outcomes: readonly SendOutcome[]) => void;
  readonly #cleanups: (() => void)[] = [];

  constructor(records: readonly EncodedRecord[], outcomes: (SendOutcome | undefined)[], resolve: (outcomes: readonly SendOutcome[]) => void) {
    this.records = records;
    this.outcomes = outcomes;
    this.#resolve = resolve;
  }

  get settled(): boolean {
    return this.#settled;
  }

  /** Records not yet handed to a request, unless the send is over. */
  get untaken(): number {
    return this.#settled ? 0 : this.records.length - this.taken;
  }

  /** Runs `listener` when the send ends (at once if it has). */
  onSettle(listener: () => void): void {
    if (this.#settled) listener();
    else this.#cleanups.push(listener);
  }

  /** Records `[from, to)` were acknowledged; resolves the send when they were its last. */
  acknowledge(from: number, to: number): void {
    if (this.#settled) return;
    for (let i = from; i < to; i++) this.outcomes[i] = delivered;
    this.acked = Math.max(this.acked, to);
    if (this.acked === this.records.length) this.settle(delivered);
  }

  /** Ends the send now: every event without an outcome yet gets `rest`. */
  settle(rest: SendOutcome): void {
    if (this.#settled) return;
    this.#settled = true;
    for (let i = 0; i < this.outcomes.length; i++) this.outcomes[i] ??= rest;
    for (const cleanup of this.#cleanups) cleanup();
    this.#resolve(this.outcomes as SendOutcome[]);
  }
}

/** The records of one send that are in one request. */
export interface RequestPart {
  readonly send: PendingSend;
  readonly from: number;
  readonly to: number;
}

/** Records to produce in one request, and whose they are. */
export interface ProduceRequest {
  readonly records: readonly EncodedRecord[];
  readonly parts: readonly RequestPart[];
}

/**
 * Sends waiting to be produced, in call order. Each request takes records from the oldest send
 * onwards, up to `maxBytes`, so sends made while a request was in flight share the next one, and
 * records always reach Kafka in the order their sends were made.
 */
export class ProduceQueue {
  readonly #waiting: PendingSend[] = [];
  readonly #maxBytes: number;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  get length(): number {
    return this.#waiting.length;
  }

  push(send: PendingSend): void {
    this.#waiting.push(send);
  }

  /** Forgets a send that ended before all its records were taken (aborted or timed out). */
  remove(send: PendingSend): void {
    const at = this.#waiting.indexOf(send);
    if (at >= 0) this.#waiting.splice(at, 1);
  }

  /** The next request, or undefined when nothing waits. A record larger than `maxBytes` goes alone. */
  next(): ProduceRequest | undefined {
    const records: EncodedRecord[] = [];
    const parts: RequestPart[] = [];
    let bytes = 0;
    while (this.#waiting.length > 0) {
      const send = this.#waiting[0]!;
      const from = send.taken;
      while (send.untaken > 0) {
        const record = send.records[send.taken]!;
        if (records.length > 0 && bytes + record.bytes > this.#maxBytes) break;
        records.push(record);
        bytes += record.bytes;
        send.taken++;
      }
      if (send.taken > from) parts.push({ send, from, to: send.taken });
      if (send.untaken > 0) break; // the request is full
      this.#waiting.shift();
    }
    return records.length === 0 ? undefined : { records, parts };
  }
}
