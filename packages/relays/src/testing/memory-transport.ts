import { ConfigError, TransportClosedError, type OutboxEvent, type SendOutcome, type Transport, type TransportCapabilities } from '@tidings/outbox';
import { dispatchToBroker, drainBroker, MemoryBroker } from './memory-broker.ts';

const noOutcomes: readonly SendOutcome[] = Object.freeze([]);

export interface MemoryTransportOptions {
  /** Destination shared with other transports and inspected by the test. Default: a broker of its own. */
  readonly broker?: MemoryBroker;
  /** Default `'memory'`. */
  readonly name?: string;
  /** Declared in the capabilities; a larger batch is refused. Default: no limit. */
  readonly maxBatchSize?: number;
}

/**
 * Capabilities of every memory transport without a batch limit.
 *
 * @example
 * describeTransport('memory', memoryCapabilities, memoryHarness);
 */
export const memoryCapabilities: TransportCapabilities = Object.freeze({ orderedPerKey: true, persistent: false });

/** The in-process reference transport, as {@link memoryTransport} returns it. */
export interface MemoryTransport extends Transport {
  /** Where its events arrive; inspect it in tests. */
  readonly broker: MemoryBroker;
  /** Whether `close()` was called. */
  readonly closed: boolean;
}

/**
 * The in-process reference transport: events arrive on a {@link MemoryBroker} in send order,
 * synchronously unless the broker has latency, with no per-event await or copy (fast enough to
 * benchmark the relay rather than the transport). `send` honours its AbortSignal; `close()` lets
 * sends in flight finish and is idempotent; a send after close rejects with `TransportClosedError`.
 *
 * @example
 * const transport = memoryTransport({ maxBatchSize: 100 });
 * const relay = createRelay({ name: 'orders-to-memory', database, transport });
 * await relay.start();
 * const arrived = await transport.broker.waitFor('orders.created', 10);
 */
class BrokerTransport implements MemoryTransport {
  readonly name: string;
  readonly system = 'memory';
  readonly capabilities: TransportCapabilities;
  readonly broker: MemoryBroker;
  readonly #maxBatchSize: number;
  #closing: Promise<void> | undefined;

  constructor(options: MemoryTransportOptions = {}) {
    this.name = options.name ?? 'memory';
    this.broker = options.broker ?? new MemoryBroker();
    const max = options.maxBatchSize;
    if (max !== undefined && !(Number.isInteger(max) && max > 0)) throw new ConfigError('maxBatchSize', `expected a positive integer, got ${max}`);
    this.#maxBatchSize = max ?? Infinity;
    this.capabilities = max === undefined ? memoryCapabilities : Object.freeze({ ...memoryCapabilities, maxBatchSize: max });
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  send(batch: readonly OutboxEvent[], signal: AbortSignal): Promise<readonly SendOutcome[]> {
    if (this.#closing !== undefined) return Promise.reject(new TransportClosedError(this.name));
    if (signal.aborted) return Promise.reject(signal.reason);
    if (batch.length > this.#maxBatchSize) {
      return Promise.reject(new RangeError(`a batch of ${batch.length} events is over this transport's maxBatchSize of ${this.#maxBatchSize}`));
    }
    if (batch.length === 0) return Promise.resolve(noOutcomes);
    return dispatchToBroker(this.broker, this, batch, signal);
  }

  close(): Promise<void> {
    return (this.#closing ??= drainBroker(this.broker, this));
  }
}

/**
 * A new in-process reference transport.
 *
 * @example
 * const transport = memoryTransport();
 * await transport.send([testEvent({ topic: 'orders' })], AbortSignal.timeout(1_000));
 * transport.broker.messages('orders'); // [the event]
 */
export function memoryTransport(options: MemoryTransportOptions = {}): MemoryTransport {
  return new BrokerTransport(options);
}
