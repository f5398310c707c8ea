/**
 * A Jepsen-style history of one property run: every business transaction as it was invoked and how
 * it ended, the faults injected between them, and what the destination and the consumer's effects
 * table held once the system drained. Plain data, written as JSON when a run fails.
 */

/** How a business transaction ended, as its client saw it. */
export type Outcome = 'ok' | 'fail' | 'unknown';

/** One event written by a business transaction, with its place in its key's commit order. */
export interface PublishedEvent {
  readonly eventId: string;
  readonly key: string | null;
  /**
   * The version the transaction gave its key's business row (under that row's lock, so a key's
   * versions follow the commit order of its transactions): per-key order is (version, id). Set
   * when the transaction takes the row lock, which a held-open transaction does only at its end.
   */
  version: number | undefined;
  /** The event's row id in the outbox, as a decimal string (orders events of one transaction). */
  readonly id: string;
}

export interface TransactionOp {
  readonly type: 'transaction';
  /** Sequence number of the transaction within the run. */
  readonly tx: number;
  /** What the client did: `commit`, `rollback`, `commit-cut` (connection cut during COMMIT), ... */
  readonly action: string;
  /** Published with `notify: false` (models a lost NOTIFY). */
  readonly silent: boolean;
  readonly events: readonly PublishedEvent[];
  /** Undefined while the transaction is still open. */
  outcome: Outcome | undefined;
  /** Milliseconds since the run started. */
  readonly invokedAt: number;
  completedAt: number | undefined;
  /** Why the client saw `fail` or `unknown`. */
  error?: string;
}

export interface FaultOp {
  readonly type: 'fault';
  readonly name: string;
  readonly detail?: string;
  readonly at: number;
}

export type HistoryOp = TransactionOp | FaultOp;

/** One message as it reached the destination (duplicates included), in arrival order. */
export interface Arrival {
  readonly eventId: string;
  readonly key: string | null;
}

/** One application of an event's effect by an inbox-guarded handler (a row of the effects table). */
export interface Effect {
  readonly eventId: string;
  readonly key: string | null;
  /** The record it was applied from, where a consumer promises once per record (Kafka checkpoint mode). */
  readonly record?: string;
}

/**
 * A handler run that swallowed a SQL error (see swallow.ts): its transaction was aborted, so this
 * run must not count as applied; the event must be delivered again and applied by a later run.
 */
export interface SwallowedRun {
  readonly eventId: string;
  /** Which run of the handler for this event (1 = the first). */
  readonly run: number;
  readonly statement: string;
  readonly place: string;
  /** How many times a handler ran for the event by the end of the run (filled in when judged). */
  runs?: number;
}

export interface History {
  readonly destination: string;
  readonly ops: readonly HistoryOp[];
  arrivals: readonly Arrival[];
  effects: readonly Effect[];
  /** Handler runs that swallowed a SQL error; absent in a run without any. */
  swallowed?: readonly SwallowedRun[];
}

/** Appends to a history while a run goes on. */
export class HistoryRecorder {
  readonly #started = Date.now();
  readonly #ops: HistoryOp[] = [];
  readonly #swallowed: SwallowedRun[] = [];
  #tx = 0;
  readonly destination: string;

  constructor(destination: string) {
    this.destination = destination;
  }

  /** Records that a transaction began; call `published`, then `complete` when it ends. */
  invoke(action: string, silent: boolean): TransactionOp {
    const op: TransactionOp = {
      type: 'transaction',
      tx: ++this.#tx,
      action,
      silent,
      events: [],
      outcome: undefined,
      invokedAt: this.#now(),
      completedAt: undefined,
    };
    this.#ops.push(op);
    return op;
  }

  published(op: TransactionOp, events: readonly PublishedEvent[]): void {
    (op.events as PublishedEvent[]).push(...events);
  }

  /** Records the versions a transaction gave its keys' rows (once it holds their locks). */
  versioned(op: TransactionOp, versions: ReadonlyMap<string, number>): void {
    for (const event of op.events) if (event.key !== null && versions.has(event.key)) event.version = versions.get(event.key);
  }

  complete(op: TransactionOp, outcome: Outcome, error?: unknown): void {
    op.outcome = outcome;
    op.completedAt = this.#now();
    if (error !== undefined) op.error = error instanceof Error ? error.message : String(error);
  }

  fault(name: string, detail?: string): void {
    this.#ops.push(detail === undefined ? { type: 'fault', name, at: this.#now() } : { type: 'fault', name, detail, at: this.#now() });
  }

  /** Records a handler run that swallowed a SQL error. */
  swallowed(run: SwallowedRun): void {
    this.#swallowed.push({ ...run });
  }

  /** Events a handler ran for after swallowing an error: they must still be applied. */
  swallowedIds(): string[] {
    return [...new Set(this.#swallowed.map((s) => s.eventId))];
  }

  get ops(): readonly HistoryOp[] {
    return this.#ops;
  }

  /** Events of transactions the client saw commit. */
  committedIds(): string[] {
    return transactions(this.#ops)
      .filter((op) => op.outcome === 'ok')
      .flatMap((op) => op.events.map((e) => e.eventId));
  }

  /** The history to judge; `runsOf` tells how many times a handler ran for an event in the end. */
  history(arrivals: readonly Arrival[], effects: readonly Effect[], runsOf?: (eventId: string) => number): History {
    const history: History = { destination: this.destination, ops: this.#ops, arrivals, effects };
    if (this.#swallowed.length === 0) return history;
    return { ...history, swallowed: this.#swallowed.map((s) => (runsOf ? { ...s, runs: runsOf(s.eventId) } : { ...s })) };
  }

  #now(): number {
    return Date.now() - this.#started;
  }
}

export function transactions(ops: readonly HistoryOp[]): TransactionOp[] {
  return ops.filter((op): op is TransactionOp => op.type === 'transaction');
}
