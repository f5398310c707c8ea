import { resolveRelayOptions } from '#relay-options';
import { assertClusterFits } from '../cluster.ts';
import { notifyChannel } from '../options.ts';
import { DeadLetterRetrier } from './dead-letter-retrier.ts';
import type { RelayEvent, RelayOptions, ResolvedRelayOptions } from './options.ts';
import { PartitionRunner } from './partition-runner.ts';
import { directReads, type PartitionReads } from './partition-reads.ts';
import type { SharedHeartbeats } from './shared-heartbeats.ts';
import { ParkingStore } from './parking-store.ts';
import { RelayStore } from './store.ts';

/** Whether the destination takes events, as this worker's partitions see it. */
export interface DestinationStatus {
  /** False while any partition of this worker waits for the destination. */
  readonly available: boolean;
  /** When the oldest running outage began. */
  readonly unavailableSince?: Date;
  /** The latest error of an unavailable destination. */
  readonly error?: string;
  /** Partitions waiting for the destination. */
  readonly waitingPartitions: readonly number[];
}

export interface RelayStatus {
  readonly worker: string;
  readonly running: boolean;
  /** Partitions this worker holds now. */
  readonly partitions: readonly number[];
  readonly destination: DestinationStatus;
  /** Keys parked behind a dead letter in this worker's partitions (see `listParkedKeys` for all of them). */
  readonly parkedKeys: number;
}

/** A relay worker: start it in as many processes as you like; they share the partitions. */
export interface Relay {
  readonly name: string;
  readonly worker: string;
  start(): Promise<void>;
  /**
   * Stops taking work: every wait (for a retry or an unavailable destination) ends at once and no
   * new send starts; lets each partition's send in flight finish (aborting it after `graceMs`,
   * default 10 s), gives the leases back so other workers take over at once, and closes the transport.
   */
  stop(options?: { graceMs?: number }): Promise<void>;
  status(): RelayStatus;
}

/**
 * Creates a relay worker that forwards committed outbox events to a transport, at least once and in
 * order per key.
 *
 * @example
 * const relay = createRelay({ name: 'orders-to-rabbit', database: pgDatabase(url), transport });
 * await relay.start();
 * process.on('SIGTERM', () => relay.stop());
 */
export function createRelay(options: RelayOptions): Relay {
  const resolved = resolveRelayOptions(options);
  return new RelayWorker(resolved, { reads: directReads(resolved.database, resolved.schema) });
}

/**
 * @internal What the relays of one process may share: their reads of the log, their heartbeats,
 * and the cluster check made before they start (e.g. a `sharedClusterCheck`; without it each relay
 * checks on its own).
 */
export interface RelayShares {
  readonly reads: PartitionReads;
  readonly heartbeats?: SharedHeartbeats;
  readonly clusterCheck?: () => Promise<void>;
}

/**
 * @internal A relay that reads its partitions through `shares.reads` (e.g. a
 * `SharedPartitionReads`) and, given `shares.heartbeats`, sends its heartbeats with other relays'
 * ones; both on the same database and schema as `options`.
 */
export function createSharedRelay(options: RelayOptions, shares: RelayShares): Relay {
  return new RelayWorker(resolveRelayOptions(options), shares);
}

class RelayWorker implements Relay {
  readonly #options: ResolvedRelayOptions;
  readonly #store: RelayStore;
  readonly #parking: ParkingStore;
  readonly #runners = new Map<number, PartitionRunner>();
  /** Partitions being given back; their leases are released once their runner stopped. */
  readonly #releasing = new Set<Promise<void>>();
  readonly #deadLetters: DeadLetterRetrier;
  readonly #reads: PartitionReads;
  readonly #clusterCheck: () => Promise<void>;
  #partitions = 0;
  #state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  #timer: NodeJS.Timeout | undefined;
  #tick: Promise<void> = Promise.resolve();
  #unlisten: (() => Promise<void>) | undefined;

  constructor(options: ResolvedRelayOptions, shares: RelayShares) {
    this.#options = options;
    this.#reads = shares.reads;
    this.#clusterCheck = shares.clusterCheck ?? (() => assertClusterFits(options.database, options.schema));
    const heartbeats = shares.heartbeats;
    this.#store = new RelayStore(options.database, options.schema, options.name, options.workerId, heartbeats);
    this.#parking = new ParkingStore(options.database, options.schema, options.name, options.workerId);
    this.#deadLetters = new DeadLetterRetrier(options, heartbeats && ((relay) => heartbeats.retryWaiting(relay)));
  }

  get name(): string {
    return this.#options.name;
  }

  get worker(): string {
    return this.#options.workerId;
  }

  async start(): Promise<void> {
    if (this.#state !== 'new') throw new Error(`relay "${this.name}" was already started; create a new relay to start again`);
    this.#state = 'running';
    try {
      await this.#clusterCheck();
    } catch (error) {
      this.#state = 'stopped';
      throw error;
    }
    this.#partitions = await this.#store.register(this.#options.startFrom);
    this.#unlisten = await this.#options.database.listen(notifyChannel(this.#options.schema), (payload) => this.#notified(payload));
    await this.#heartbeat();
    this.#timer = setInterval(() => {
      this.#tick = this.#tick.then(() => this.#heartbeat());
    }, this.#options.heartbeatIntervalMs);
  }

  async stop({ graceMs = 10_000 }: { graceMs?: number } = {}): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'stopping') return;
    const started = this.#state === 'running';
    this.#state = 'stopping';
    clearInterval(this.#timer);
    await this.#tick;
    if (started) {
      await this.#unlisten?.();
      await this.#deadLetters.stop();
      for (const runner of this.#runners.values()) this.#release(runner, graceMs);
      while (this.#releasing.size > 0) await Promise.all([...this.#releasing]);
      await this.#store.deregister().catch((error: unknown) => this.#emit({ type: 'error', error: error as Error }));
    }
    if (this.#options.closeTransport) await this.#options.transport.close();
    this.#state = 'stopped';
  }

  status(): RelayStatus {
    const runners = [...this.#runners.values()].sort((a, b) => a.partition - b.partition);
    const waiting = runners.filter((runner) => runner.outage !== undefined);
    const outages = waiting.map((runner) => runner.outage!);
    const since = outages.reduce<Date | undefined>((oldest, o) => (oldest === undefined || o.since < oldest ? o.since : oldest), undefined);
    const latest = outages[0];
    return {
      worker: this.worker,
      running: this.#state === 'running',
      partitions: runners.map((runner) => runner.partition),
      destination: {
        available: waiting.length === 0,
        ...(since === undefined ? {} : { unavailableSince: since }),
        ...(latest === undefined ? {} : { error: latest.error.message }),
        waitingPartitions: waiting.map((runner) => runner.partition),
      },
      parkedKeys: runners.reduce((sum, runner) => sum + runner.parkedKeys, 0),
    };
  }

  #notified(payload: string): void {
    const all = payload === '*' || payload === '';
    // The reads hear it first, so the runners woken next find it when they ask.
    this.#reads.wake(all ? undefined : Number(payload));
    if (all) {
      for (const runner of this.#runners.values()) {
        runner.checkParked();
        runner.wake();
      }
      this.#deadLetters.wake();
      return;
    }
    this.#runners.get(Number(payload))?.wake();
  }

  /**
   * Keeps this worker's membership and leases alive and shares the partitions out: each of the N
   * live workers aims for ceil(P / N), taking free or expired partitions and giving back extras.
   */
  async #heartbeat(): Promise<void> {
    if (this.#state !== 'running') return;
    const { leaseTtlMs } = this.#options;
    try {
      const live = await this.#store.heartbeat(leaseTtlMs);
      const kept = await this.#store.renew([...this.#runners.values()].map((r) => r.lease), leaseTtlMs);
      for (const [partition, runner] of this.#runners) {
        if (kept.has(partition)) continue;
        this.#runners.delete(partition);
        runner.abandon();
        this.#emit({ type: 'lease-lost', partition });
      }
      const share = Math.ceil(this.#partitions / live);
      const extra = [...this.#runners.values()].sort((a, b) => b.partition - a.partition).slice(0, Math.max(0, this.#runners.size - share));
      // Given back without waiting here: a runner finishing its send must never hold up renewals.
      for (const runner of extra) this.#release(runner, Math.min(this.#options.heartbeatIntervalMs, 5_000));
      for (const runner of this.#runners.values()) runner.checkParked();
      if (this.#runners.size < share && this.#state === 'running') {
        for (const lease of await this.#store.acquire(share - this.#runners.size, leaseTtlMs)) {
          const runner = new PartitionRunner(this.#options, this.#store, this.#parking, this.#reads, lease);
          this.#runners.set(lease.partition, runner);
          runner.start();
          this.#emit({ type: 'lease-acquired', partition: lease.partition });
        }
      }
      this.#deadLetters.wake();
    } catch (error) {
      // The database is unreachable: keep the runners (their fenced writes fail safely if the
      // leases run out meanwhile) and try again at the next heartbeat.
      this.#emit({ type: 'error', error: error as Error });
    }
  }

  /**
   * Stops the runner (its waits end at once) and gives its lease back once its send in flight is
   * over. Not renewed meanwhile, the lease still fences the runner's last cursor move.
   */
  #release(runner: PartitionRunner, graceMs: number): void {
    this.#runners.delete(runner.partition);
    const releasing = (async () => {
      await runner.stop(graceMs);
      await this.#store.release(runner.lease).catch((error: unknown) => this.#emit({ type: 'error', error: error as Error }));
      this.#emit({ type: 'lease-released', partition: runner.partition });
    })();
    this.#releasing.add(releasing);
    void releasing.finally(() => this.#releasing.delete(releasing));
  }

  #emit(event: RelayEvent): void {
    this.#options.onEvent(event);
  }
}
