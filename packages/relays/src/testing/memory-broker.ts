import {
  ConfigError,
  delivered,
  failed,
  retry,
  TidingsError,
  TransportClosedError,
  unavailable,
  type OutboxEvent,
  type SendOutcome,
  type Transport,
  type TransportCapabilities,
} from '@tidings/outbox';
import { MemoryBrokerError, type DownBehaviour, type FailurePredicate } from './memory-broker-faults.ts';

export interface MemoryBrokerOptions {
  /** Every send waits this long before its events arrive. Default 0: sends complete synchronously. */
  readonly latencyMs?: number;
  /** Keep at least this many of the latest messages per topic (counts stay exact). Default: keep all. */
  readonly retain?: number;
}

type Listener = (event: OutboxEvent) => void;

interface TopicLog {
  readonly messages: OutboxEvent[];
  count: number;
  listeners: Set<Listener> | undefined;
}

interface PendingSend {
  readonly transport: BrokerClient;
  readonly batch: readonly OutboxEvent[];
  readonly signal: AbortSignal;
  readonly promise: Promise<readonly SendOutcome[]>;
  readonly resolve: (outcomes: readonly SendOutcome[]) => void;
  readonly reject: (error: unknown) => void;
  readonly onAbort: () => void;
  /** Undefined while the send is parked on a broker that is down in `hang` mode. */
  timer: NodeJS.Timeout | undefined;
}

/** What the broker knows of a transport that sends to it. */
export interface BrokerClient {
  readonly name: string;
  readonly closed: boolean;
}

let dispatch: (broker: MemoryBroker, transport: BrokerClient, batch: readonly OutboxEvent[], signal: AbortSignal) => Promise<readonly SendOutcome[]>;
let drain: (broker: MemoryBroker, transport: BrokerClient) => Promise<void>;

/** @internal How a MemoryTransport hands a batch to its broker. */
export function dispatchToBroker(broker: MemoryBroker, transport: BrokerClient, batch: readonly OutboxEvent[], signal: AbortSignal): Promise<readonly SendOutcome[]> {
  return dispatch(broker, transport, batch, signal);
}

/** @internal How a closing MemoryTransport waits for its sends in flight. */
export function drainBroker(broker: MemoryBroker, transport: BrokerClient): Promise<void> {
  return drain(broker, transport);
}

/**
 * The destination behind memory transports: per-topic logs of what arrived, in order, watchers,
 * and the faults tests inject. Several transports may share one broker, as several processes share
 * one RabbitMQ.
 *
 * @example
 * const broker = new MemoryBroker();
 * const transport = memoryTransport({ broker });
 * await transport.send(testEvents(3, { topic: 'orders' }), AbortSignal.timeout(1_000));
 * broker.messages('orders').length; // 3
 * broker.takeDown(); // sends now answer 'unavailable' until broker.recover()
 */
export class MemoryBroker {
  readonly #logs = new Map<string, TopicLog>();
  readonly #pending = new Set<PendingSend>();
  readonly #retain: number;
  #latencyMs: number;
  #down: DownBehaviour | undefined;
  #failNext = 0;
  #failNextStatus: 'retry' | 'failed' = 'retry';
  #failWhen: FailurePredicate | undefined;

  static {
    dispatch = (broker, transport, batch, signal) => broker.#dispatch(transport, batch, signal);
    drain = (broker, transport) => broker.#drain(transport);
  }

  constructor(options: MemoryBrokerOptions = {}) {
    this.#latencyMs = checkLatency(options.latencyMs ?? 0);
    const retain = options.retain ?? Infinity;
    if (!(retain === Infinity || (Number.isInteger(retain) && retain > 0))) throw new ConfigError('retain', `expected a positive integer, got ${retain}`);
    this.#retain = retain;
  }

  /** What arrived on `topic`, oldest first; a live view that grows as events arrive. */
  messages(topic: string): readonly OutboxEvent[] {
    return this.#log(topic).messages;
  }

  /** How many events arrived on `topic` (on every topic when omitted), duplicates included. */
  count(topic?: string): number {
    if (topic !== undefined) return this.#logs.get(topic)?.count ?? 0;
    let total = 0;
    for (const log of this.#logs.values()) total += log.count;
    return total;
  }

  /** Topics that received at least one event or have a watcher. */
  topics(): string[] {
    return [...this.#logs.keys()];
  }

  /** Calls `listener` synchronously for each event arriving on `topic` from now on; returns the unwatch function. */
  watch(topic: string, listener: Listener): () => void {
    const log = this.#log(topic);
    (log.listeners ??= new Set()).add(listener);
    return () => {
      log.listeners?.delete(listener);
      if (log.listeners?.size === 0) log.listeners = undefined;
    };
  }

  /** Resolves with the topic's messages once `count` events arrived on it in total. */
  waitFor(topic: string, count: number, timeoutMs = 10_000): Promise<readonly OutboxEvent[]> {
    const log = this.#log(topic);
    if (log.count >= count) return Promise.resolve(log.messages);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        unwatch();
        reject(new Error(`only ${log.count} of ${count} events arrived on "${topic}" within ${timeoutMs} ms`));
      }, timeoutMs);
      const unwatch = this.watch(topic, () => {
        if (log.count < count) return;
        unwatch();
        clearTimeout(timer);
        resolve(log.messages);
      });
    });
  }

  /** Forgets every message and count; watchers stay, and views from `messages()` stay live. */
  clear(): void {
    for (const log of this.#logs.values()) {
      log.messages.length = 0;
      log.count = 0;
    }
  }

  get isDown(): boolean {
    return this.#down !== undefined;
  }

  /** Sends in flight (waiting out the latency, or parked on a hanging broker). */
  get inFlight(): number {
    return this.#pending.size;
  }

  get latencyMs(): number {
    return this.#latencyMs;
  }

  /** Slows down every send from now on; sends already waiting keep their delay. */
  setLatency(ms: number): void {
    this.#latencyMs = checkLatency(ms);
  }

  /** The broker goes away; nothing arrives until `recover()`. `behaviour` says what sends do meanwhile. */
  takeDown(behaviour: DownBehaviour = 'retry'): void {
    this.#down = behaviour;
    if (behaviour === 'hang') return;
    for (const pending of this.#pending) if (pending.timer === undefined) this.#complete(pending);
  }

  /** The broker comes back; parked sends proceed, after the latency. */
  recover(): void {
    this.#down = undefined;
    for (const pending of this.#pending) if (pending.timer === undefined) this.#wait(pending);
  }

  /**
   * Cuts every transport's connection: each send in flight resolves with `unavailable` for all its
   * events. Like a real broker whose confirms were lost, the first `arrived` fraction (default half)
   * of each batch already reached the topic, so resending makes duplicates. Later sends work.
   * Returns how many sends were cut. Sends are only ever in flight with latency or a hanging broker.
   */
  cutConnections(options: { readonly arrived?: number } = {}): number {
    const arrived = Math.min(1, Math.max(0, options.arrived ?? 0.5));
    const outcome = unavailable(new MemoryBrokerError('connection-cut', 'the connection to the memory broker was cut before it confirmed the batch'));
    const cut = [...this.#pending];
    for (const pending of cut) {
      const reachedBroker = pending.timer !== undefined && this.#down === undefined;
      this.#settle(pending);
      const count = reachedBroker ? Math.floor(pending.batch.length * arrived) : 0;
      if (count > 0) this.#accept(count === pending.batch.length ? pending.batch : pending.batch.slice(0, count));
      pending.resolve(filled(pending.batch.length, outcome));
    }
    return cut.length;
  }

  /**
   * The next `count` events reaching the broker fail with `status` instead of arriving. As in an
   * ordered transport, a `retry` failure also fails the rest of its batch (status `retry`, reason
   * `not-attempted`), so nothing overtakes the event that must be retried.
   */
  failNext(count: number, status: 'retry' | 'failed' = 'retry'): void {
    this.#failNext = count;
    this.#failNextStatus = status;
  }

  /** Fails every event for which `predicate` answers a status (same rules as `failNext`); undefined stops. */
  failWhen(predicate: FailurePredicate | undefined): void {
    this.#failWhen = predicate;
  }

  #dispatch(transport: BrokerClient, batch: readonly OutboxEvent[], signal: AbortSignal): Promise<readonly SendOutcome[]> {
    if (this.#down === undefined) {
      if (this.#latencyMs === 0) return Promise.resolve(this.#accept(batch));
    } else if (this.#down === 'retry') {
      return Promise.resolve(this.#downOutcomes(batch.length));
    } else if (this.#down === 'throw') {
      return Promise.reject(this.#downError());
    }
    let resolve!: (outcomes: readonly SendOutcome[]) => void;
    let reject!: (error: unknown) => void;
    const promise = new Promise<readonly SendOutcome[]>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const pending: PendingSend = {
      transport,
      batch,
      signal,
      promise,
      resolve,
      reject,
      timer: undefined,
      onAbort: () => {
        this.#settle(pending);
        reject(signal.reason);
      },
    };
    signal.addEventListener('abort', pending.onAbort, { once: true });
    this.#pending.add(pending);
    if (this.#down === undefined) this.#wait(pending);
    return promise;
  }

  #wait(pending: PendingSend): void {
    pending.timer = setTimeout(() => {
      pending.timer = undefined;
      this.#complete(pending);
    }, this.#latencyMs);
  }

  #complete(pending: PendingSend): void {
    if (this.#down === 'hang' && !pending.transport.closed) return; // parked until recover(), abort, cut or close
    this.#settle(pending);
    if (this.#down === undefined) pending.resolve(this.#accept(pending.batch));
    else if (this.#down === 'retry') pending.resolve(this.#downOutcomes(pending.batch.length));
    else if (this.#down === 'throw') pending.reject(this.#downError());
    else pending.resolve(closedOutcomes(pending));
  }

  #settle(pending: PendingSend): void {
    clearTimeout(pending.timer);
    pending.timer = undefined;
    pending.signal.removeEventListener('abort', pending.onAbort);
    this.#pending.delete(pending);
  }

  /** Lets the transport's sends in flight finish; parked sends cannot, so they answer `retry`. */
  async #drain(transport: BrokerClient): Promise<void> {
    const mine = [...this.#pending].filter((pending) => pending.transport === transport);
    for (const pending of mine) {
      if (pending.timer !== undefined) continue;
      this.#settle(pending);
      pending.resolve(closedOutcomes(pending));
    }
    await Promise.all(mine.map((pending) => pending.promise.then(noop, noop)));
  }

  #accept(batch: readonly OutboxEvent[]): readonly SendOutcome[] {
    if (this.#failNext === 0 && this.#failWhen === undefined) {
      this.#record(batch, 0, batch.length);
      return allDelivered(batch.length);
    }
    const outcomes = new Array<SendOutcome>(batch.length);
    for (let i = 0; i < batch.length; i++) {
      const event = batch[i]!;
      let status = this.#failWhen?.(event) || undefined;
      if (!status && this.#failNext > 0) {
        this.#failNext--;
        status = this.#failNextStatus;
      }
      if (!status) {
        this.#record(batch, i, i + 1);
        outcomes[i] = delivered;
        continue;
      }
      const error = new MemoryBrokerError('injected', `event ${event.eventId} was failed on purpose with status "${status}"`);
      if (status === 'failed') {
        outcomes[i] = failed(error);
        continue;
      }
      outcomes[i] = retry(error);
      const skipped = new MemoryBrokerError('not-attempted', `not sent: event ${event.eventId} before it in the batch must be retried first`);
      return outcomes.fill(retry(skipped), i + 1);
    }
    return outcomes;
  }

  #record(batch: readonly OutboxEvent[], from: number, to: number): void {
    const trimAt = this.#retain * 2;
    let topic: string | undefined;
    let log!: TopicLog;
    for (let i = from; i < to; i++) {
      const event = batch[i]!;
      if (event.topic !== topic) {
        topic = event.topic;
        log = this.#log(topic);
      }
      log.messages.push(event);
      log.count++;
      if (log.listeners !== undefined) notify(log.listeners, event);
      if (log.messages.length > trimAt) log.messages.splice(0, log.messages.length - this.#retain);
    }
  }

  #log(topic: string): TopicLog {
    let log = this.#logs.get(topic);
    if (log === undefined) {
      log = { messages: [], count: 0, listeners: undefined };
      this.#logs.set(topic, log);
    }
    return log;
  }

  #downOutcomes(count: number): readonly SendOutcome[] {
    return filled(count, unavailable(this.#downError()));
  }

  #downError(): MemoryBrokerError {
    return new MemoryBrokerError('down', 'the memory broker is down (takeDown() was called); nothing is delivered until recover()');
  }
}

const noOutcomes: readonly SendOutcome[] = Object.freeze([]);
let deliveredRun: readonly SendOutcome[] = noOutcomes;

/** One frozen all-delivered array per batch size in a row: steady batch sizes allocate nothing. */
function allDelivered(count: number): readonly SendOutcome[] {
  if (deliveredRun.length !== count) deliveredRun = Object.freeze(filled(count, delivered));
  return deliveredRun;
}

function filled(count: number, outcome: SendOutcome): SendOutcome[] {
  return new Array<SendOutcome>(count).fill(outcome);
}

/** For sends held by a down broker when their transport closes: nothing was sent, try again elsewhere. */
function closedOutcomes(pending: PendingSend): SendOutcome[] {
  const error = new TransportClosedError(pending.transport.name, 'it closed while the broker was down, before this batch was sent');
  return filled(pending.batch.length, unavailable(error));
}

function notify(listeners: Set<Listener>, event: OutboxEvent): void {
  for (const listener of listeners) {
    try {
      listener(event);
    } catch (error) {
      // A watcher's bug must not turn into a failed send; surface it as an uncaught error instead.
      queueMicrotask(() => {
        throw error;
      });
    }
  }
}

function checkLatency(ms: number): number {
  if (!(Number.isFinite(ms) && ms >= 0)) throw new ConfigError('latencyMs', `expected a number of milliseconds >= 0, got ${ms}`);
  return ms;
}

function noop(): void {}
