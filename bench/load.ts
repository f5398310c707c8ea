import pg from 'pg';
import { publish } from '@tidings/outbox';
import { orderPayload, topic } from './support.ts';

/** How long the load runs, and at what rate (see `LatencyPlan`). */
export interface PacePlan {
  readonly rate: number;
  readonly seconds: number;
}

/**
 * One clock for every process of the bench on this machine: the monotonic clock the kernel keeps
 * for all of them (CLOCK_MONOTONIC), in milliseconds, so a COMMIT timed in the service's process
 * and an acknowledgement timed in the relay's compare.
 */
export function machineMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/**
 * Starts `fire(i)` for i = 0, 1, … at `plan.rate` per second for `plan.seconds`, without waiting
 * for earlier ones (a service does not wait for other requests); resolves with the count once all
 * have settled, and rejects with the first failure.
 */
export async function paced(plan: PacePlan, fire: (i: number) => Promise<void>): Promise<number> {
  const total = Math.round(plan.rate * plan.seconds);
  const started = performance.now();
  const inFlight = new Set<Promise<void>>();
  let failure: Error | undefined;
  for (let n = 0; n < total && !failure; ) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * plan.rate) + 1);
    for (; n < due; n++) {
      const one = fire(n).catch((error: Error) => void (failure ??= error));
      inFlight.add(one);
      void one.finally(() => inFlight.delete(one));
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(inFlight);
  if (failure) throw failure;
  return total;
}

/** The service's business transaction: one event published, committed; resolves with its event id. */
export async function commitOne(pool: pg.Pool, schema: string, n: number): Promise<string> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const order = orderPayload(n);
    const [event] = await publish(client, { topic, key: order.customer as string, payload: order }, { schema });
    await client.query('COMMIT');
    return event!.eventId;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
