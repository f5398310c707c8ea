import type { OutboxEvent, Transport } from '@tidings/outbox';

/** A broker or receiver the bench relays to, and sends to directly for comparison. */
export interface Destination {
  readonly name: 'rabbitmq' | 'kafka' | 'kafka_platformatic' | 'webhook';
  /** A fresh place to deliver to (a queue, a topic) for one run. */
  target(): Promise<Target>;
  close(): Promise<void>;
}

export interface Target {
  /** A new relay transport that delivers here. */
  transport(): Transport;
  /**
   * Sends the events straight to the destination with the same client and the same guarantees
   * as the transport, and resolves once every one is acknowledged. `lanes` are the events of each
   * outbox partition, in log order, as the relay would read them. The client stays open between
   * calls, so a first small call warms it up.
   */
  direct(lanes: readonly (readonly OutboxEvent[])[]): Promise<void>;
  /**
   * Sends one event straight to the destination with the same client and guarantees, as a service
   * publishing on its own would, and resolves at its acknowledgement. Calls may overlap: each
   * client keeps the settings `direct` uses (see each destination).
   */
  publishOne(event: OutboxEvent): Promise<void>;
  dispose(): Promise<void>;
}
