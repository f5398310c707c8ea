import { replay } from '@tidings/outbox';
import { memoryTransport, MemoryBroker } from '@tidings/relays/testing';
import { startRelayWorker, type WorkerLine, type WorkerProcess } from '../../test/support/worker-process.ts';
import { relayDrain } from '../relay-drain.ts';
import { benchOutbox, databaseUrl, median, medianRatio, partitions, seedBacklog, sideBySide, waitFor, type BenchOutbox } from '../support.ts';

export interface BacklogPlan {
  readonly small: number;
  readonly large: number;
  /** Drains of the small backlog per round (their median is the round's sample: one is short and noisy). */
  readonly smallRepeats: number;
  readonly batchSize: number;
  readonly rounds: number;
}

export interface BacklogResult {
  readonly backlog_ratio: number;
  readonly small_per_s: number;
  readonly large_per_s: number;
}

/**
 * `scaling.backlog_ratio`: one relay worker drains a large backlog and a small one (each in its own
 * outbox) to the in-memory transport, side by side. Reading by cursor costs the same per event
 * however long the log is, so the ratio should stay near 1.
 */
export async function backlogScaling(plan: BacklogPlan): Promise<BacklogResult> {
  const small = await benchOutbox('backlog_small');
  const large = await benchOutbox('backlog_large');
  try {
    await seedBacklog(small, plan.small);
    await seedBacklog(large, plan.large);
    const drain = (outbox: BenchOutbox, events: number, name: string): Promise<number> =>
      relayDrain(outbox, { name, transport: memoryTransport({ broker: new MemoryBroker({ retain: 1 }) }), events, batchSize: plan.batchSize });
    const samples = await sideBySide('scaling.backlog', plan.rounds, {
      large: (round) => drain(large, plan.large, `large-${round}`),
      small: async (round) => {
        const rates: number[] = [];
        for (let i = 0; i < plan.smallRepeats; i++) rates.push(await drain(small, plan.small, `small-${round}-${i}`));
        return median(rates);
      },
    });
    return {
      backlog_ratio: medianRatio(samples.large, samples.small),
      small_per_s: median(samples.small),
      large_per_s: median(samples.large),
    };
  } finally {
    await small.close();
    await large.close();
  }
}

export interface WorkersPlan {
  readonly events: number;
  readonly counts: readonly number[];
  readonly batchSize: number;
  readonly rounds: number;
}

/**
 * `scaling.workers`: the same backlog drained by 1, 2 and 4 relay worker processes (each relaying
 * to an in-memory broker of its own). One relay per worker count, all started up front on an
 * idle log (`startFrom: 'now'`); once a relay's workers share the partitions evenly, a run moves
 * its cursors back to the start (`replay`) and times from the first lease taken again to the last
 * event delivered. The worker counts take turns, round by round.
 */
export async function workerScaling(plan: WorkersPlan): Promise<Record<string, number>> {
  const outbox = await benchOutbox('scaling_workers');
  const fleets: Fleet[] = [];
  try {
    await seedBacklog(outbox, plan.events);
    for (const count of plan.counts) fleets.push(startFleet(outbox, `workers-${count}`, count, plan.batchSize));
    await Promise.all(fleets.map((fleet) => fleet.balanced()));
    const variants = Object.fromEntries(fleets.map((fleet) => [String(fleet.children.length), () => fleet.drain(outbox, plan.events)]));
    const samples = await sideBySide('scaling.workers', plan.rounds, variants);
    return Object.fromEntries(Object.entries(samples).map(([count, rates]) => [count, median(rates)]));
  } finally {
    await Promise.all(fleets.map((fleet) => fleet.stop()));
    await outbox.close();
  }
}

interface WorkerState {
  held: number;
  delivered: number;
  deliveredAt: number;
  acquiredAt: number[];
}

interface Fleet {
  readonly children: readonly WorkerProcess[];
  balanced(): Promise<void>;
  drain(outbox: BenchOutbox, events: number): Promise<number>;
  stop(): Promise<void>;
}

function startFleet(outbox: BenchOutbox, relay: string, count: number, batchSize: number): Fleet {
  const states: WorkerState[] = [];
  const children = Array.from({ length: count }, (_, i) => {
    const state: WorkerState = { held: 0, delivered: 0, deliveredAt: 0, acquiredAt: [] };
    states.push(state);
    const child = startRelayWorker({
      databaseUrl,
      databasePoolSize: 8,
      relay: {
        name: relay,
        schema: outbox.schema,
        workerId: `${relay}-${i}`,
        batchSize,
        startFrom: 'now',
        // Short leases, so that the workers share the partitions out within a second of starting.
        leaseTtlMs: 3_000,
        heartbeatIntervalMs: 200,
      },
      // An in-memory broker of the worker's own.
      transport: { kind: 'memory' },
    });
    child.onLine((line: WorkerLine) => {
      if (typeof line.held === 'number') state.held = line.held;
      if (line.type === 'lease-acquired') state.acquiredAt.push(line.at as number);
      else if (line.type === 'delivered') {
        state.delivered += line.count as number;
        state.deliveredAt = line.at as number;
      } else if (line.type === 'dead-letter' || line.type === 'unavailable' || line.type === 'error') {
        process.stderr.write(`  [${relay} worker ${i}] ${String(line.error)}\n`);
      }
    });
    return child;
  });
  const share = partitions / count;
  const balanced = (): Promise<void> =>
    waitFor(`the ${count} workers of ${relay} share the partitions evenly`, () => states.every((s) => s.held === share), 30_000);

  return {
    children,
    balanced,
    async drain(db, events) {
      await balanced();
      const before = states.map((s) => s.delivered);
      for (const state of states) state.acquiredAt = [];
      await replay(db.db, { schema: db.schema, relay, from: new Date(0) });
      const done = (): boolean => states.reduce((sum, s, i) => sum + s.delivered - before[i]!, 0) >= events;
      await waitFor(`${relay} drained the backlog`, done, Math.max(60_000, events));
      const started = Math.min(...states.flatMap((s) => s.acquiredAt));
      const ended = Math.max(...states.map((s) => s.deliveredAt));
      return events / ((ended - started) / 1000);
    },
    async stop() {
      await Promise.all(children.map((child) => child.stop(15_000)));
    },
  };
}
