import { assertClusterFits } from '../cluster.ts';
import { notifyChannel } from '../options.ts';
import { DeadLetterRetrier } from './dead-letter-retrier.ts';
import { resolveRelayOptions, type RelayEvent, type RelayOptions, type ResolvedRelayOptions } from './options.ts';
import { PartitionRunner } from './partition-runner.ts';
import { RelayStore } from './store.ts';

export interface RelayStatus {
  readonly worker: string;
  readonly running: boolean;
  /** Partitions this worker holds now. */
  readonly partitions: readonly number[];
}

/** A relay worker: start it in as many processes as you like; they share the partitions. */
export interface Relay {
  readonly name: string;
  readonly worker: string;
  start(): Promise<void>;
  /**
   * Stops taking work, lets each partition's batch in flight finish (aborting it after `graceMs`,
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
  return new RelayWorker(resolveRelayOptions(options));
}

class RelayWorker implements Relay {
  readonly #options: ResolvedRelayOptions;
  readonly #store: RelayStore;
  readonly #runners = new Map<number, PartitionRunner>();
  readonly #deadLetters: DeadLetterRetrier;
  #partitions = 0;
  #state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  #timer: NodeJS.Timeout | undefined;
  #tick: Promise<void> = Promise.resolve();
  #unlisten: (() => Promise<void>) | undefined;

  constructor(options: ResolvedRelayOptions) {
    this.#options = options;
    this.#store = new RelayStore(options.database, options.schema, options.name, options.workerId);
    this.#deadLetters = new DeadLetterRetrier(options);
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
      await assertClusterFits(this.#options.database, this.#options.schema);
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
      await Promise.all([...this.#runners.values()].map((runner) => this.#release(runner, graceMs)));
      await this.#store.deregister().catch((error: unknown) => this.#emit({ type: 'error', error: error as Error }));
    }
    if (this.#options.closeTransport) await this.#options.transport.close();
    this.#state = 'stopped';
  }

  status(): RelayStatus {
    return { worker: this.worker, running: this.#state === 'running', partitions: [...this.#runners.keys()].sort((a, b) => a - b) };
  }

  #notified(payload: string): void {
    if (payload === '*' || payload === '') {
      for (const runner of this.#runners.values()) runner.wake();
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
      for (const runner of extra) await this.#release(runner, Math.min(this.#options.heartbeatIntervalMs, 5_000));
      if (this.#runners.size < share && this.#state === 'running') {
        for (const lease of await this.#store.acquire(share - this.#runners.size, leaseTtlMs)) {
          const runner = new PartitionRunner(this.#options, this.#store, lease);
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

  async #release(runner: PartitionRunner, graceMs: number): Promise<void> {
    await runner.stop(graceMs);
    this.#runners.delete(runner.partition);
    await this.#store.release(runner.lease).catch((error: unknown) => this.#emit({ type: 'error', error: error as Error }));
    this.#emit({ type: 'lease-released', partition: runner.partition });
  }

  #emit(event: RelayEvent): void {
    this.#options.onEvent(event);
  }
}
