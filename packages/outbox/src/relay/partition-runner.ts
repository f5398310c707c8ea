import { context, SpanKind, SpanStatusCode, trace, type Attributes, type Link, type Span } from '@opentelemetry/api';
import { LeaseLostError } from '../errors.ts';
import { attributes, instruments, producerContext, producerSpanContext, tidingsTracer } from '../telemetry.ts';
import { asError, pause } from '../waits.ts';
import type { OutboxEvent, Position } from '../event.ts';
import { comparePositions, maxPosition } from '../position.ts';
import { unavailable, type SendOutcome } from '../transport.ts';
import { retryDelay } from './backoff.ts';
import type { RelayEvent, ResolvedRelayOptions } from './options.ts';
import type { ParkingStore } from './parking-store.ts';
import type { PartitionReads } from './partition-reads.ts';
import type { AttemptError, Lease, RelayStore } from './store.ts';

/** A read cursor that moved only past filtered-out rows is saved at most this often. */
const idleSaveIntervalMs = 5_000;

type Failure = Exclude<SendOutcome, { status: 'delivered' }>;

/** Where a list of events being sent comes from, and what delivering or giving one up means there. */
interface Lane {
  /** `prefix` reached the destination. */
  delivered(prefix: readonly OutboxEvent[], rest: readonly OutboxEvent[]): Promise<void>;
  /** `head` was refused for good: returns what to send next, or `undefined` to end the lane. */
  dead(head: OutboxEvent, attempts: readonly AttemptError[], error: Error, rest: readonly OutboxEvent[]): Promise<readonly OutboxEvent[] | undefined>;
}

/** Where the destination stands as seen from one partition. */
export interface PartitionOutage {
  readonly since: Date;
  readonly attempts: number;
  readonly error: Error;
}

/**
 * Relays one leased partition: read a page after the cursor, send it, move the cursor past the
 * delivered prefix, repeat; sleep when caught up until a NOTIFY or the poll interval wakes it.
 * Order within the partition is kept: a failing event holds back the ones after it until it is
 * delivered or dead-lettered, and a dead-lettered event's key is parked (onFailure `park`) so its
 * later events wait behind it. An unavailable destination is waited for and never counted.
 */
/**
 * The most links a send span gets: OpenTelemetry's default span link limit. An SDK keeps only the
 * last `linkCountLimit` links added to a span, yet copies and cleans every one it is handed and
 * warns about the rest, so a batch of 500 paid for 500 links to keep 128.
 */
export const maxSendLinks = 128;

export class PartitionRunner {
  readonly lease: Lease;
  readonly #options: ResolvedRelayOptions;
  readonly #store: RelayStore;
  readonly #parking: ParkingStore;
  readonly #reads: PartitionReads;
  /** Aborts the send in flight: the lease is gone, or a stop's grace ran out. */
  readonly #abort = new AbortController();
  /** Ends every wait at once: stopping, released, or the lease is gone. */
  readonly #halt = new AbortController();
  readonly #parks: boolean;
  /** Parked keys of this partition and the dead letter (event id) each waits behind; undefined until loaded. */
  #parked: Map<string, string> | undefined;
  #resolveParked = true;
  /** Everything before this position has been handled (may be ahead of the saved cursor). */
  #readFrom: Position;
  #saved: Position;
  #savedAt = Date.now();
  #stopping = false;
  #wake: (() => void) | undefined;
  #woken = false;
  #outage: PartitionOutage | undefined;
  #done: Promise<void> = Promise.resolve();
  /** The metrics' attributes of this relay and transport. */
  readonly #labels: Attributes;

  constructor(options: ResolvedRelayOptions, store: RelayStore, parking: ParkingStore, reads: PartitionReads, lease: Lease) {
    this.#options = options;
    this.#reads = reads;
    this.#labels = attributes({ relay: options.name, transport: options.transport.system ?? options.transport.name });
    this.#store = store;
    this.#parking = parking;
    this.lease = lease;
    this.#readFrom = lease.cursor;
    this.#saved = lease.cursor;
    this.#parks = options.onFailure === 'park';
  }

  get partition(): number {
    return this.lease.partition;
  }

  /** Set while the destination is unavailable to this partition. */
  get outage(): PartitionOutage | undefined {
    return this.#outage;
  }

  /** How many keys of this partition are parked (0 until known). */
  get parkedKeys(): number {
    return this.#parked?.size ?? 0;
  }

  start(): void {
    this.#done = this.#run().catch((error: unknown) => this.#report(error));
  }

  /** New events may be waiting: look now instead of at the next poll. */
  wake(): void {
    this.#woken = true;
    this.#wake?.();
  }

  /** A dead letter may have been retried or discarded: look at the parked keys (if any) before the next page. */
  checkParked(): void {
    this.#resolveParked = true;
    if (this.#parked === undefined || this.#parked.size > 0) this.wake();
  }

  /**
   * Ends any wait at once and starts nothing new; lets the send in flight finish (and its cursor
   * move), aborting it after `graceMs`.
   */
  async stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    this.#halt.abort();
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
    this.#halt.abort();
    this.#abort.abort(new LeaseLostError(this.#options.name, this.partition));
    this.wake();
  }

  get #running(): boolean {
    return !this.#stopping && !this.#abort.signal.aborted;
  }

  async #run(): Promise<void> {
    const unfollow = this.#reads.follow(this.partition, () => this.wake(), this.#options.pollIntervalMs);
    try {
      await this.#follow();
    } finally {
      unfollow();
    }
  }

  async #follow(): Promise<void> {
    const { batchSize, topics, tenant, pollIntervalMs } = this.#options;
    while (this.#running) {
      this.#woken = false;
      let page;
      try {
        this.#parked ??= new Map((await this.#parking.parkedKeys(this.lease)).map((p) => [p.key, p.eventId]));
        if (this.#resolveParked) {
          this.#resolveParked = false;
          if (this.#parked.size > 0) await this.#resolveParkedKeys();
          if (!this.#running) break;
        }
        page = await this.#reads.read({ partition: this.partition, after: this.#readFrom, limit: batchSize, topics, tenant });
        if (page.events.length > 0 && !(await this.#deliver(page.events, page.scannedTo))) break;
        this.#readFrom = maxPosition(this.#readFrom, page.scannedTo);
        if (page.more) continue;
        await this.#saveIdleProgress();
      } catch (error) {
        if (error instanceof LeaseLostError || !this.#running) {
          this.#lost(error);
          return;
        }
        this.#report(error);
        // The database is failing (or the transport in a way sends do not cover): start again from
        // the saved cursor after a pause.
        this.#readFrom = this.#saved;
        this.#parked = undefined;
        this.#resolveParked = true;
        await this.#idle(this.#options.retry.minDelayMs * 10);
        continue;
      }
      await this.#idle(pollIntervalMs);
    }
    // Stopping on purpose: keep how far filtered-out rows were passed, so the next owner skips them.
    if (!this.#abort.signal.aborted) await this.#saveIdleProgress(true).catch(() => {});
  }

  /** Sends a page from the log. Returns false when the partition must stop (stopping, or the lease is gone). */
  async #deliver(events: readonly OutboxEvent[], scannedTo: Position): Promise<boolean> {
    const lane: Lane = {
      delivered: async (prefix, rest) => {
        const last = prefix.at(-1)!.position;
        await this.#save(rest.length === 0 ? maxPosition(last, scannedTo) : last);
        this.#options.onEvent({ type: 'delivered', partition: this.partition, count: prefix.length });
      },
      dead: async (head, attempts, error, rest) => {
        const parks = this.#parks && head.key !== null;
        await this.#store.deadLetter(this.lease, head, attempts, parks);
        this.#readFrom = maxPosition(this.#readFrom, head.position);
        this.#saved = head.position;
        this.#emitFor(head, { type: 'dead-letter', partition: this.partition, eventId: head.eventId, error });
        if (parks && !this.#parked!.has(head.key!)) {
          this.#parked!.set(head.key!, head.eventId);
          this.#emitFor(head, { type: 'key-parked', partition: this.partition, key: head.key!, eventId: head.eventId });
        }
        return this.#setAside(rest, scannedTo);
      },
    };
    const pending = await this.#setAside(events, scannedTo);
    if (pending.length > 0) await this.#sendInOrder(pending, lane);
    return this.#running;
  }

  /** Parks the events of parked keys and returns the others, in order. */
  async #setAside(events: readonly OutboxEvent[], scannedTo: Position): Promise<readonly OutboxEvent[]> {
    const parked = this.#parked!;
    if (parked.size === 0 || events.length === 0) return events;
    const aside = events.filter((e) => e.key !== null && parked.has(e.key));
    if (aside.length === 0) return events;
    await this.#parking.park(this.lease, aside);
    instruments().parked.add(aside.length, this.#labels);
    const rest = events.filter((e) => e.key === null || !parked.has(e.key));
    if (rest.length === 0) await this.#save(maxPosition(events.at(-1)!.position, scannedTo));
    return rest;
  }

  /**
   * Delivers the parked keys whose dead letter an operator retried (the dead letter first) or
   * discarded: their parked events follow in order, and the key flows again once none is left. A
   * refusal for good makes that event the key's dead letter, and the key stays parked behind it.
   */
  async #resolveParkedKeys(): Promise<void> {
    const parked = this.#parked!;
    for (const item of await this.#parking.toResolve(this.lease)) {
      if (!this.#running) return;
      let letter = item.letter;
      let delivered = 0;
      let blocked = false;
      while (this.#running && !blocked) {
        const batch = await this.#parking.parkedEvents(this.lease, item.key, this.#options.batchSize - (letter ? 1 : 0));
        if (!letter && batch.length === 0) break;
        const seqs = new Map(batch.map((p) => [p.event, p.seq] as const));
        const events = letter ? [letter, ...batch.map((p) => p.event)] : batch.map((p) => p.event);
        const lane: Lane = {
          delivered: async (prefix) => {
            const withLetter = letter !== undefined && prefix[0] === letter;
            await this.#parking.delivered(this.lease, withLetter ? letter!.eventId : undefined, prefix.flatMap((e) => seqs.get(e) ?? []));
            if (withLetter) letter = undefined;
            delivered += prefix.length;
            this.#options.onEvent({ type: 'delivered', partition: this.partition, count: prefix.length });
          },
          dead: async (head, attempts, error) => {
            blocked = true;
            if (head === letter) {
              await this.#parking.deadAgain(this.lease, head.eventId, attempts);
            } else {
              await this.#parking.parkedEventDead(this.lease, { seq: seqs.get(head)!, event: head }, attempts);
              parked.set(item.key, head.eventId);
            }
            this.#emitFor(head, { type: 'dead-letter', partition: this.partition, eventId: head.eventId, error });
            return undefined;
          },
        };
        await this.#sendInOrder(events, lane);
      }
      if (!this.#running || blocked) continue;
      if (await this.#parking.release(this.lease, item.key)) {
        parked.delete(item.key);
        this.#options.onEvent({ type: 'key-released', partition: this.partition, key: item.key, delivered });
      }
    }
  }

  /**
   * Sends `events` in order until every one is delivered, the lane ends, or the partition stops.
   * `unavailable` waits for the destination and counts nothing; a refusal counts toward the
   * refused event's retries (every one, after a delivered prefix too), honouring its Retry-After.
   */
  async #sendInOrder(events: readonly OutboxEvent[], lane: Lane): Promise<void> {
    const { retry: policy, onFailure } = this.#options;
    let pending = events;
    let attempts: AttemptError[] = [];
    while (pending.length > 0 && this.#running) {
      const outcomes = await this.#send(pending);
      let k = 0;
      while (k < pending.length && outcomes[k]!.status === 'delivered') k++;
      if (k > 0) {
        const prefix = pending.slice(0, k);
        pending = pending.slice(k);
        attempts = [];
        this.#available();
        this.#countDelivered(prefix);
        await lane.delivered(prefix, pending);
        if (pending.length === 0) return;
      }
      const head = pending[0]!;
      const outcome = outcomes[k] as Failure;
      if (outcome.status === 'unavailable') {
        const since = this.#outage?.since ?? new Date();
        const attempt = (this.#outage?.attempts ?? 0) + 1;
        this.#outage = { since, attempts: attempt, error: outcome.error };
        if (attempt === 1) this.#record({ since, error: outcome.error.message });
        const delayMs = retryDelay(policy, attempt, outcome.retryAfterMs);
        this.#emitFor(head, { type: 'unavailable', partition: this.partition, eventId: head.eventId, attempt, delayMs, error: outcome.error });
        await this.#pause(delayMs);
        continue;
      }
      this.#available();
      attempts.push({ attempt: attempts.length + 1, at: new Date().toISOString(), message: outcome.error.message });
      if (onFailure !== 'block' && (outcome.status === 'failed' || attempts.length > policy.retries)) {
        instruments().deadLettered.add(1, this.#labels);
        const next = await lane.dead(head, attempts, outcome.error, pending.slice(1));
        if (next === undefined) return;
        pending = next;
        attempts = [];
        continue;
      }
      const delayMs = retryDelay(policy, attempts.length, 'retryAfterMs' in outcome ? outcome.retryAfterMs : undefined);
      instruments().retried.add(1, this.#labels);
      this.#emitFor(head, { type: 'retry', partition: this.partition, eventId: head.eventId, attempt: attempts.length, delayMs, error: outcome.error });
      await this.#pause(delayMs);
    }
  }

  async #send(batch: readonly OutboxEvent[]): Promise<readonly SendOutcome[]> {
    const span = this.#sendSpan(batch);
    const started = performance.now();
    try {
      const outcomes = await context.with(trace.setSpan(context.active(), span), () => this.#options.transport.send(batch, this.#abort.signal));
      if (outcomes.length !== batch.length) {
        throw new Error(`transport ${this.#options.transport.name} returned ${outcomes.length} outcomes for ${batch.length} events`);
      }
      endSendSpan(span, outcomes);
      return outcomes;
    } catch (error) {
      span.recordException(asError(error));
      span.setStatus({ code: SpanStatusCode.ERROR, message: asError(error).message });
      if (this.#abort.signal.aborted) throw this.#abort.signal.reason;
      const outcome = unavailable(error);
      return batch.map(() => outcome);
    } finally {
      span.end();
      instruments().sendDuration.record((performance.now() - started) / 1000, this.#labels);
    }
  }

  /**
   * One span per send of a batch (messaging semantic conventions, operation `send`), linked to the
   * context each event was published in, for the batch's last {@link maxSendLinks} events. Kind
   * CLIENT: the consumers' spans descend from the publishers' contexts, not from this one. Links
   * are parsed only when the span records, so without an SDK a batch costs one no-op span.
   */
  #sendSpan(batch: readonly OutboxEvent[]): Span {
    const topic = batch[0]!.topic;
    const oneTopic = batch.every((event) => event.topic === topic);
    const attrs: Attributes = {
      'messaging.system': this.#options.transport.system ?? this.#options.transport.name,
      'messaging.operation.type': 'send',
      'messaging.operation.name': 'send',
      'messaging.batch.message_count': batch.length,
      'tidings.relay': this.#options.name,
      'tidings.partition': this.partition,
    };
    if (oneTopic) attrs['messaging.destination.name'] = topic;
    const span = tidingsTracer().startSpan(oneTopic ? `send ${topic}` : 'send', { kind: SpanKind.CLIENT, attributes: attrs });
    if (span.isRecording()) {
      const links: Link[] = [];
      for (let i = Math.max(0, batch.length - maxSendLinks); i < batch.length; i++) {
        const event = batch[i]!;
        const producer = producerSpanContext(event.headers);
        if (producer) links.push({ context: producer, attributes: { 'messaging.message.id': event.eventId } });
      }
      if (links.length > 0) span.addLinks(links);
    }
    return span;
  }

  /** Counts a delivered prefix: one add, and each event's time from its write to the acknowledgement. */
  #countDelivered(prefix: readonly OutboxEvent[]): void {
    const meter = instruments();
    meter.delivered.add(prefix.length, this.#labels);
    const now = Date.now();
    for (const event of prefix) meter.commitToAck.record(Math.max(0, now - event.createdAt.getTime()) / 1000, this.#labels);
  }

  /** The destination answered: an outage, if there was one, is over. */
  #available(): void {
    const outage = this.#outage;
    if (!outage) return;
    this.#outage = undefined;
    this.#record(undefined);
    this.#options.onEvent({ type: 'available', partition: this.partition, unavailableMs: Date.now() - outage.since.getTime() });
  }

  /** Keeps the outage in the partition's row for `status()`; never holds up sending. */
  #record(outage: { since: Date; error: string } | undefined): void {
    this.#store.markUnavailable(this.lease, outage).catch((error: unknown) => this.#report(error));
  }

  /** Waits `ms`, or less when the partition stops. */
  async #pause(ms: number): Promise<void> {
    await pause(ms, this.#halt.signal);
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

  /** Reports what happened to one event in the context it was published in: a log line of it carries the publisher's trace. */
  #emitFor(event: OutboxEvent, relayEvent: RelayEvent): void {
    context.with(producerContext(event.headers), () => this.#options.onEvent(relayEvent));
  }

  #lost(error: unknown): void {
    if (error instanceof LeaseLostError) this.#options.onEvent({ type: 'lease-lost', partition: this.partition });
  }

  #report(error: unknown): void {
    this.#options.onEvent({ type: 'error', partition: this.partition, error: asError(error) });
  }
}

/** A batch with any event not delivered is an error span, described by the first failure. */
function endSendSpan(span: Span, outcomes: readonly SendOutcome[]): void {
  if (!span.isRecording()) return;
  const failure = outcomes.find((outcome): outcome is Failure => outcome.status !== 'delivered');
  const deliveredCount = outcomes.reduce((n, outcome) => n + (outcome.status === 'delivered' ? 1 : 0), 0);
  span.setAttribute('tidings.delivered_count', deliveredCount);
  if (failure) span.setStatus({ code: SpanStatusCode.ERROR, message: `${failure.status}: ${failure.error.message}` });
}
