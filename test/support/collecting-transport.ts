import { delivered, type OutboxEvent, type Transport } from '@tidings/outbox';

/** A transport that keeps what it was sent, in order, and acknowledges everything at once. */
export function collectingTransport(): Transport & { got: OutboxEvent[] } {
  const got: OutboxEvent[] = [];
  return {
    name: 'collect',
    capabilities: { orderedPerKey: true, persistent: false },
    got,
    async send(batch) {
      got.push(...batch);
      return batch.map(() => delivered);
    },
    async close() {},
  };
}
