import { collectingSubscription } from './conformance-subscription.ts';
import type { Subscription, TransportHarness } from './harness.ts';
import { MemoryBroker } from './memory-broker.ts';
import type { DownBehaviour } from './memory-broker-faults.ts';
import { memoryTransport, type MemoryTransport } from './memory-transport.ts';

export interface MemoryHarnessOptions {
  /** Broker latency, so that sends are in flight long enough to be cut or aborted. Default 0. */
  readonly latencyMs?: number;
  /** What sends do while the harness has the broker down. Default `'retry'`. */
  readonly whenDown?: DownBehaviour;
  readonly maxBatchSize?: number;
}

/** The memory transport's conformance harness, with its broker for extra assertions. */
export interface MemoryHarness extends TransportHarness {
  readonly broker: MemoryBroker;
}

/**
 * A {@link TransportHarness} over one {@link MemoryBroker}: every transport it creates shares the
 * broker, subscriptions watch its topics, and faults act on it.
 *
 * @example
 * describeTransport('memory', memoryCapabilities, memoryHarness);
 * describeTransport('memory, slow and hanging while down', memoryCapabilities, () =>
 *   memoryHarness({ latencyMs: 20, whenDown: 'hang' }),
 * );
 */
export async function memoryHarness(options: MemoryHarnessOptions = {}): Promise<MemoryHarness> {
  const broker = new MemoryBroker({ latencyMs: options.latencyMs ?? 0 });
  const whenDown = options.whenDown ?? 'retry';
  const transports = new Set<MemoryTransport>();
  const subscriptions = new Set<Subscription>();
  return {
    broker,
    async createTransport() {
      const transport = memoryTransport({ broker, maxBatchSize: options.maxBatchSize });
      transports.add(transport);
      return transport;
    },
    async subscribe(topic) {
      const subscription = collectingSubscription(topic, () => {
        unwatch();
        subscriptions.delete(subscription);
      });
      const unwatch = broker.watch(topic, (event) => subscription.push(event));
      subscriptions.add(subscription);
      return subscription;
    },
    faults: {
      takeDown: async () => broker.takeDown(whenDown),
      recover: async () => broker.recover(),
      cutConnections: async () => {
        broker.cutConnections();
      },
    },
    async close() {
      broker.recover();
      await Promise.all([...transports].map((transport) => transport.close()));
      await Promise.all([...subscriptions].map((subscription) => subscription.close()));
      broker.clear();
    },
  };
}
