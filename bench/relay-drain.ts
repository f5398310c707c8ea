import { createRelay, type Transport } from '@tidings/outbox';
import type { BenchOutbox } from './support.ts';

export interface DrainOptions {
  /** A new name per run, so each run starts from the beginning of the log. */
  readonly name: string;
  readonly transport: Transport;
  /** Events in the backlog: the drain ends when the relay has delivered (and moved its cursors past) them all. */
  readonly events: number;
  readonly batchSize: number;
  readonly timeoutMs?: number;
}

/** One drain: its rate and the CPU this process spent on each event while it ran. */
export interface DrainRun {
  readonly perSecond: number;
  /** User plus system CPU time of this process (every thread) from the first lease to the last cursor move, per event. */
  readonly cpuUsPerEvent: number;
}

/** {@link measuredDrain}'s rate alone. */
export async function relayDrain(outbox: BenchOutbox, options: DrainOptions): Promise<number> {
  return (await measuredDrain(outbox, options)).perSecond;
}

/**
 * Drains the backlog with one in-process relay worker and returns events per second, timed from
 * its first lease (when reading starts) to the cursor move past the last event, with the CPU time
 * the process spent over the same span. A run with a retry, an error or a dead letter is refused:
 * events sent again would count twice, and its rate would not be a delivery rate.
 */
export async function measuredDrain(outbox: BenchOutbox, options: DrainOptions): Promise<DrainRun> {
  const { events } = options;
  let started: number | undefined;
  let cpuAtStart: NodeJS.CpuUsage | undefined;
  let cpu: NodeJS.CpuUsage | undefined;
  let delivered = 0;
  let failure: Error | undefined;
  let finish!: (at: number) => void;
  const finished = new Promise<number>((resolve) => (finish = resolve));
  const relay = createRelay({
    name: options.name,
    database: outbox.db,
    schema: outbox.schema,
    transport: options.transport,
    batchSize: options.batchSize,
    onEvent(event) {
      if (event.type === 'lease-acquired' && started === undefined) {
        started = performance.now();
        cpuAtStart = process.cpuUsage();
      } else if (event.type === 'delivered' && (delivered += event.count) >= events && cpu === undefined) {
        cpu = process.cpuUsage(cpuAtStart);
        finish(performance.now());
      }
      else if (event.type === 'dead-letter' || event.type === 'retry' || event.type === 'unavailable' || event.type === 'error') failure ??= event.error;
    },
  });
  const timeoutMs = options.timeoutMs ?? Math.max(60_000, events);
  let timer: NodeJS.Timeout | undefined;
  try {
    await relay.start();
    const ended = await Promise.race([
      finished,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`relay ${options.name} delivered ${delivered} of ${events} events within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    if (failure) throw new Error(`relay ${options.name} hit a failure, so its count may include resends: ${failure.message}`);
    return { perSecond: events / ((ended - started!) / 1000), cpuUsPerEvent: (cpu!.user + cpu!.system) / events };
  } finally {
    clearTimeout(timer);
    await relay.stop();
  }
}
