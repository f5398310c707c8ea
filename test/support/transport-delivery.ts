import type { OutboxEvent, Transport } from '@tidings/outbox';
import { testEvent, type ConsumerUnderTest } from '@tidings/relays/testing';

/**
 * A consumer conformance harness's `deliver` and `redeliver` through a transport, as the relay
 * sends: each call resolves once the destination confirmed every event.
 */
export function transportDelivery(transport: Transport, topic: string): Pick<ConsumerUnderTest, 'deliver' | 'redeliver'> {
  const sent = new Map<string, OutboxEvent>();
  const send = async (events: readonly OutboxEvent[]): Promise<void> => {
    const outcomes = await transport.send(events, AbortSignal.timeout(20_000));
    if (outcomes.some((outcome) => outcome.status !== 'delivered')) throw new Error(`the transport did not deliver every event: ${JSON.stringify(outcomes)}`);
  };
  return {
    async deliver(inputs) {
      const events = inputs.map((input) => testEvent({ topic, key: input.key, payload: input.payload }));
      for (const event of events) sent.set(event.eventId, event);
      await send(events);
      return events.map((event) => event.eventId);
    },
    redeliver: (eventIds) => send(eventIds.map((id) => sent.get(id)!)),
  };
}
