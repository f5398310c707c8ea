import type { Json, Transport } from '@tidings/outbox';

/** One message as a test consumer saw it arrive at the destination. */
export interface ReceivedMessage {
  readonly eventId: string;
  readonly topic: string;
  readonly key: string | null;
  readonly headers: Readonly<Record<string, string>>;
  readonly payload: Json;
}

/** Everything that arrives for one topic, in arrival order. */
export interface Subscription {
  readonly received: readonly ReceivedMessage[];
  /** Resolves once at least `count` messages arrived; rejects after `timeoutMs` saying how many did. */
  waitFor(count: number, timeoutMs?: number): Promise<readonly ReceivedMessage[]>;
  close(): Promise<void>;
}

/** Ways to break the destination on purpose. Every transport's harness provides all of them. */
export interface TransportFaults {
  /** The broker or receiver goes away: new sends must not succeed until `recover()`. */
  takeDown(): Promise<void>;
  /** The broker or receiver comes back. */
  recover(): Promise<void>;
  /** Cuts the connections that transports hold open right now; the destination itself stays up. */
  cutConnections(): Promise<void>;
}

/** What a transport's test file gives the conformance suite: little more than a factory. */
export interface TransportHarness {
  /** A new transport; the suite closes it. */
  createTransport(): Promise<Transport>;
  /** Starts receiving `topic`; resolves once a message sent from now on will be seen. */
  subscribe(topic: string): Promise<Subscription>;
  readonly faults: TransportFaults;
  close(): Promise<void>;
}
