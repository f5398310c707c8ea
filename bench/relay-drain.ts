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

/**
 * Drains the backlog with one in-process relay worker and returns events per second, timed from
 * its first lease (when reading starts) to the cursor move past the last event. A run with a
 * retry, an error or a dead letter is refused: events sent again would count twice, and its rate
 * would not be a delivery rate.
 */
export async function relayDrain(outbox: BenchOutbox, options: DrainOptions): Promise<number> {
  const { events } = options;
  let started: number | undefined;
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
      if (event.type === 'lease-acquired') started ??= performance.now();
      else if (event.type === 'delivered' && (delivered += event.count) >= events) finish(performance.now());
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
    return events / ((ended - started!) / 1000);
  } finally {
    clearTimeout(timer);
    await relay.stop();
  }
}
