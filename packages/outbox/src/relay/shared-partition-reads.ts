import type { OutboxEvent, Position } from '../event.ts';
import type { Executor } from '../executor.ts';
import { comparePositions } from '../position.ts';
import { tailRoute } from '#tail-route';
import { eventFilter, readPartition, type ReadOptions, type ReadResult } from '../read.ts';
import type { PartitionReads } from './partition-reads.ts';

export interface SharedPartitionReadsSettings {
  /** Most events one shared read takes. Default 500. */
  readonly readLimit?: number;
  /** Most events kept per partition for runners a little behind. Default 1 000. */
  readonly capacity?: number;
}

interface Waiter {
  readonly options: ReadOptions;
  resolve(result: ReadResult): void;
  reject(error: unknown): void;
}

interface Follower {
  readonly wake: () => void;
  readonly pollIntervalMs: number;
}

/** What one partition's shared reads know of the log. */
interface Tail {
  /** Every event of the partition after `start` up to `end`, in commit order (at most `capacity`). */
  events: OutboxEvent[];
  start: Position;
  end: Position;
  /** The last read was full: the log goes on after `end`. */
  full: boolean;
  /** Wake-ups (NOTIFY, polls) so far. */
  wakes: number;
  /** `wakes` when the last completed read started: equal means no commit was announced since. */
  seen: number;
  /** Moves when the tail jumps forward, so that a read started before the jump is not appended. */
  epoch: number;
  reading: boolean;
  scheduled: boolean;
  /** A wake-up came during the read: read once more. */
  again: boolean;
  waiters: Waiter[];
  readonly followers: Set<Follower>;
  timer: NodeJS.Timeout | undefined;
  pollMs: number | undefined;
}

/**
 * @internal Reads of the log shared by the runners of many relays of one process that follow
 * the same partitions (a webhook dispatcher's endpoints), so that N relays cost about as many
 * statements as one.
 *
 * Per partition it keeps a tail: the last events read, without filter, after the position where
 * its first runner stood. A runner's read is answered from the tail, with its own filter and page
 * size, exactly as `readPartition` would answer it; one unfiltered read of the log after the tail
 * serves every runner that has caught up. The tail reads when a NOTIFY arrives (once for all the
 * relays that heard it), when a caught-up runner asks after a wake-up, and on its own poll (the
 * shortest poll interval of its runners), which wakes the runners when it found events. A runner
 * whose own poll finds nothing announced since the last read is answered without a statement.
 *
 * Isolation: the tail never waits for a runner. It keeps at most `capacity` events; a runner that
 * fell behind them (a slow or failing destination) reads on its own, filtered, until it has caught
 * up. A runner ahead of a tail that is catching up moves the tail to it. Each runner keeps its own
 * cursor, order, retries and parking: only where its pages come from changes.
 */
export class SharedPartitionReads implements PartitionReads {
  readonly #executor: Executor;
  readonly #schema: string;
  readonly #readLimit: number;
  readonly #capacity: number;
  readonly #tails = new Map<number, Tail>();
  readonly #filters = new Map<string, (event: OutboxEvent) => boolean>();
  #closed = false;

  constructor(executor: Executor, schema: string, settings: SharedPartitionReadsSettings = {}) {
    this.#executor = executor;
    this.#schema = schema;
    this.#readLimit = settings.readLimit ?? 500;
    this.#capacity = Math.max(settings.capacity ?? 1_000, this.#readLimit);
  }

  read(options: ReadOptions): Promise<ReadResult> {
    const tail = this.#tail(options.partition, options.after);
    return new Promise<ReadResult>((resolve, reject) => {
      const waiter: Waiter = { options, resolve, reject };
      if (this.#answer(tail, waiter)) return;
      tail.waiters.push(waiter);
      // A read in flight answers it if no commit was announced since that read began (the cycle
      // reads again while waiters remain): only a wake-up calls for one more read.
      if (!tail.reading) this.#schedule(options.partition, tail);
    });
  }

  wake(partition?: number): void {
    for (const [p, tail] of this.#tails) {
      if (partition !== undefined && p !== partition) continue;
      tail.wakes++;
      if (tail.followers.size > 0 || tail.waiters.length > 0) this.#schedule(p, tail);
    }
  }

  follow(partition: number, wake: () => void, pollIntervalMs: number): () => void {
    const follower: Follower = { wake, pollIntervalMs };
    const target = this.#tail(partition);
    target.followers.add(follower);
    this.#poll(partition, target);
    return () => {
      target.followers.delete(follower);
      this.#poll(partition, target);
      if (target.followers.size === 0 && this.#tails.get(partition) === target) this.#tails.delete(partition);
    };
  }

  /** Stops every poll; reads in flight still answer their runners. */
  close(): void {
    this.#closed = true;
    for (const tail of this.#tails.values()) clearInterval(tail.timer);
    this.#tails.clear();
  }

  #tail(partition: number, at?: Position): Tail {
    let tail = this.#tails.get(partition);
    if (tail === undefined) {
      tail = {
        events: [],
        start: unplaced,
        end: unplaced,
        full: false,
        wakes: 0,
        seen: -1,
        epoch: 0,
        reading: false,
        scheduled: false,
        again: false,
        waiters: [],
        followers: new Set(),
        timer: undefined,
        pollMs: undefined,
      };
      if (!this.#closed) this.#tails.set(partition, tail);
    }
    // The first read places the tail where its runner stands.
    if (at !== undefined && tail.end === unplaced) Object.assign(tail, { start: at, end: at });
    return tail;
  }

  /**
   * Answers `waiter` now if the tail can: from its events, or "nothing new" when no commit was
   * announced since its last read began. False: it must wait for the next read.
   */
  #answer(tail: Tail, waiter: Waiter): boolean {
    const { after, limit } = waiter.options;
    const fresh = tail.seen === tail.wakes;
    switch (tailRoute(after, { start: tail.start, end: tail.end, full: tail.full, fresh })) {
      case 'own':
        readPartition(this.#executor, this.#schema, waiter.options).then(waiter.resolve, waiter.reject);
        return true;
      case 'move':
        // Runners behind read on their own; a read in flight is not appended (see `epoch`).
        Object.assign(tail, { events: [], start: after, end: after, full: false, seen: -1, epoch: tail.epoch + 1 });
        return false;
      case 'wait':
        return false;
      case 'nothing-new':
        waiter.resolve({ events: [], scannedTo: after, more: false });
        return true;
      case 'tail':
        break;
    }
    const matches = this.#filter(waiter.options);
    const events: OutboxEvent[] = [];
    for (let i = firstAfter(tail.events, after); i < tail.events.length && events.length < limit; i++) {
      const event = tail.events[i]!;
      if (matches(event)) events.push(event);
    }
    if (events.length === limit) waiter.resolve({ events, scannedTo: events.at(-1)!.position, more: true });
    else waiter.resolve({ events, scannedTo: tail.end, more: tail.full || !fresh });
    return true;
  }

  /** Reads once soon (the wake-ups of every relay that heard one NOTIFY make one read). */
  #schedule(partition: number, tail: Tail): void {
    if (tail.reading) {
      tail.again = true;
      return;
    }
    if (tail.scheduled || tail.end === unplaced) return;
    tail.scheduled = true;
    setImmediate(() => {
      tail.scheduled = false;
      void this.#cycle(partition, tail);
    });
  }

  async #cycle(partition: number, tail: Tail): Promise<void> {
    if (tail.reading) return;
    tail.reading = true;
    try {
      do {
        tail.again = false;
        const generation = tail.wakes;
        const epoch = tail.epoch;
        let page: ReadResult;
        try {
          page = await readPartition(this.#executor, this.#schema, { partition, after: tail.end, limit: this.#readLimit });
        } catch (error) {
          for (const waiter of tail.waiters.splice(0)) waiter.reject(error);
          return;
        }
        if (tail.epoch !== epoch) continue;
        tail.seen = generation;
        tail.end = page.scannedTo;
        tail.full = page.more;
        if (page.events.length > 0) {
          tail.events.push(...page.events);
          const excess = tail.events.length - this.#capacity;
          if (excess > 0) tail.start = tail.events.splice(0, excess).at(-1)!.position;
        }
        for (const waiter of tail.waiters.splice(0)) if (!this.#answer(tail, waiter)) tail.waiters.push(waiter);
        if (page.events.length > 0) for (const follower of tail.followers) follower.wake();
      } while (tail.again || tail.waiters.length > 0);
    } finally {
      tail.reading = false;
    }
  }

  /** Polls at the shortest interval of the partition's runners, while it has any. */
  #poll(partition: number, tail: Tail): void {
    let ms: number | undefined;
    for (const follower of tail.followers) ms = Math.min(ms ?? follower.pollIntervalMs, follower.pollIntervalMs);
    if (this.#closed) ms = undefined;
    if (ms === tail.pollMs) return;
    clearInterval(tail.timer);
    tail.pollMs = ms;
    tail.timer = ms === undefined ? undefined : setInterval(() => this.wake(partition), ms).unref();
  }

  #filter(options: ReadOptions): (event: OutboxEvent) => boolean {
    const key = JSON.stringify([options.tenant ?? null, options.topics ?? null]);
    let filter = this.#filters.get(key);
    if (filter === undefined) this.#filters.set(key, (filter = eventFilter(options.topics, options.tenant)));
    return filter;
  }
}

/** Where a tail stands before its first runner read. */
const unplaced: Position = Object.freeze({ seq: '-1', id: '-1' });

/** The index of the first event after `position` (events in log order). */
function firstAfter(events: readonly OutboxEvent[], position: Position): number {
  let low = 0;
  let high = events.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (comparePositions(events[mid]!.position, position) <= 0) low = mid + 1;
    else high = mid;
  }
  return low;
}
