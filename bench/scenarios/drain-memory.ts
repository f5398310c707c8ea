import { logStart, readPartition } from '@tidings/outbox';
import { memoryTransport, MemoryBroker } from '@tidings/relays/testing';
import { measuredDrain } from '../relay-drain.ts';
import { benchOutbox, median, medianRatio, partitions, seedBacklog, sideBySide, type BenchOutbox } from '../support.ts';

export interface DrainMemoryPlan {
  readonly events: number;
  readonly batchSize: number;
  readonly rounds: number;
}

export interface DrainMemoryResult {
  readonly events_per_s: number;
  /** The bare log-read statement over the same rows, with the relay's parallelism and page size. */
  readonly read_limit_per_s: number;
  readonly read_limit_ratio: number;
  /** This process's CPU time per event while the relay drained (median of the rounds). */
  readonly cpu_us_per_event: number;
}

/**
 * `drain.memory`: one relay worker drains a backlog to the in-memory transport, side by side with
 * the bare log-read statement reading the same rows — every partition at once, page by page, on the
 * same pool, with nothing else done: the database's own limit for this design. Each relay run has
 * a new name, so every run drains the whole backlog from the start.
 */
export async function drainMemory(plan: DrainMemoryPlan): Promise<DrainMemoryResult> {
  const outbox = await benchOutbox('drain_memory');
  try {
    await seedBacklog(outbox, plan.events);
    const cpu: number[] = [];
    const samples = await sideBySide('drain.memory', plan.rounds, {
      relay: async (round) => {
        const run = await measuredDrain(outbox, {
          name: `memory-${round}`,
          transport: memoryTransport({ broker: new MemoryBroker({ retain: 1 }) }),
          events: plan.events,
          batchSize: plan.batchSize,
        });
        cpu.push(run.cpuUsPerEvent);
        return run.perSecond;
      },
      read: () => bareRead(outbox, plan.events, plan.batchSize),
    });
    return {
      events_per_s: median(samples.relay),
      read_limit_per_s: median(samples.read),
      read_limit_ratio: medianRatio(samples.relay, samples.read),
      cpu_us_per_event: median(cpu),
    };
  } finally {
    await outbox.close();
  }
}

/** Events per second of the log-read statement alone over the whole backlog. */
export async function bareRead(outbox: BenchOutbox, events: number, batchSize: number): Promise<number> {
  const started = performance.now();
  const counts = await Promise.all(
    Array.from({ length: partitions }, async (_, partition) => {
      let read = 0;
      let after = logStart;
      for (;;) {
        const page = await readPartition(outbox.db, outbox.schema, { partition, after, limit: batchSize });
        read += page.events.length;
        after = page.scannedTo;
        if (page.events.length < batchSize) return read;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const read = counts.reduce((a, b) => a + b, 0);
  if (read !== events) throw new Error(`bench: the bare read saw ${read} events, expected ${events}`);
  return events / seconds;
}
