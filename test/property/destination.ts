/**
 * What the property model needs from each transport: a small "destination adapter" that starts the
 * relay workers for it (or none, for feeds), consumes what arrives through the inbox into the effects
 * table, and injects the faults it supports. One adapter per transport, under destinations/.
 */
import type { TestOutbox } from '../support/db.ts';
import type { RelayFleet } from '../support/property-fleet.ts';
import type { Arrival, Effect } from './history.ts';
import type { Swallower } from './swallow.ts';

/** Faults a destination may support, beyond business transactions. */
export type FaultKind =
  /** SIGKILL (or an abrupt stop) of a relay worker, then a replacement. */
  | 'crash-relay'
  /** SIGSTOP of a relay worker past its lease, SIGCONT later. */
  | 'pause-relay'
  /** A second relay worker joins. */
  | 'join-relay'
  /** The connections between relay and broker (or receiver) are cut; the broker stays up. */
  | 'cut-broker'
  /** The broker (receiver) becomes unreachable, and comes back later. */
  | 'broker-outage'
  /** The relays' own PostgreSQL connections are cut. */
  | 'cut-relay-db'
  /** The receiver answers 500, times out or answers slowly. */
  | 'receiver-failures'
  /** A message is delivered twice to the consumer, the copies racing each other. */
  | 'duplicate-delivery'
  /** The consumer crashes after its transaction committed, before it acknowledged the message. */
  | 'consumer-crash';

export type ReceiverFailure = '500' | 'timeout' | 'slow';

export interface Observation {
  readonly arrivals: readonly Arrival[];
  readonly effects: readonly Effect[];
}

export interface Destination {
  /** Relay workers, when the destination is fed by relays (feeds read the log themselves). */
  readonly fleet: RelayFleet | undefined;
  /** Let the model pick `cut-broker` etc. only when implemented. */
  cutBroker?(): Promise<void>;
  brokerDown?(): Promise<void>;
  brokerUp?(): Promise<void>;
  cutRelayDatabase?(): Promise<void>;
  receiverFailures?(mode: ReceiverFailure, count: number): Promise<void>;
  duplicateDelivery?(count: number): Promise<void>;
  consumerCrash?(): Promise<void>;
  /** Ends every fault still on (the broker comes back, receivers heal); relays are the model's. */
  heal(): Promise<void>;
  /** What reached the destination, duplicates included, in arrival order; and the effects table. */
  observe(): Promise<Observation>;
  /** Anything that went wrong outside the checkers' view (a consumer that died); empty when fine. */
  problems?(): string[];
  close(): Promise<void>;
}

/** What a destination adapter is given for one run. */
export interface RunContext {
  readonly outbox: TestOutbox;
  readonly schema: string;
  /** The topic of this run's events (unique per run, so shared brokers keep runs apart). */
  readonly topic: string;
  /** The relay's name. */
  readonly relay: string;
  /** Lease time of the relay workers. */
  readonly leaseMs: number;
  /**
   * Every consumer's handler runs through it: it applies the effect, and on the runs the case's
   * plan names swallows a SQL error (swallow.ts).
   */
  readonly swallower: Swallower;
}

/** A transport under test: how to build its destination for a run, and what it promises. */
export interface DestinationSpec {
  readonly name: string;
  /** The destination declares per-key order (checked on arrivals). */
  readonly ordered: boolean;
  /** The consumer applies in order too (feeds with checkpoints): order is checked on effects. */
  readonly orderedEffects?: boolean;
  readonly faults: readonly FaultKind[];
  /** Cases per CI run (TIDINGS_PROPERTY_RUNS overrides): cheap destinations run more. Default 4. */
  readonly ciRuns?: number;
  /** How long the drain waits without progress before it judges. Default 4 000 ms. */
  readonly quietMs?: number;
  create(context: RunContext): Promise<Destination>;
}
