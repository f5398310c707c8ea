import type { Destination, Target } from '../destinations/destination.ts';
import { relayDrain } from '../relay-drain.ts';
import { benchOutbox, median, medianRatio, readAll, seedBacklog, sideBySide } from '../support.ts';

export interface DrainBrokerPlan {
  readonly events: number;
  readonly batchSize: number;
  readonly rounds: number;
}

export interface DrainBrokerResult {
  readonly events_per_s: number;
  readonly direct_per_s: number;
  readonly ratio: number;
}

/**
 * `drain.<broker>`: one relay worker drains a backlog to the destination, side by side with the
 * same events sent directly with the same client and guarantees (see each destination). Every run
 * gets a fresh target, and its client is warmed up with one event first (connections, metadata),
 * so neither side pays for connecting.
 */
export async function drainBroker(destination: Destination, plan: DrainBrokerPlan): Promise<DrainBrokerResult> {
  const outbox = await benchOutbox(`drain_${destination.name}`);
  try {
    await seedBacklog(outbox, plan.events);
    const lanes = await readAll(outbox);
    const warmup = lanes.find((lane) => lane.length > 0)!.slice(0, 1);
    const onTarget = async (run: (target: Target) => Promise<number>): Promise<number> => {
      const target = await destination.target();
      try {
        return await run(target);
      } finally {
        await target.dispose();
      }
    };
    const samples = await sideBySide(`drain.${destination.name}`, plan.rounds, {
      relay: (round) =>
        onTarget(async (target) => {
          const transport = target.transport();
          await transport.send(warmup, AbortSignal.timeout(30_000));
          return relayDrain(outbox, { name: `${destination.name}-${round}`, transport, events: plan.events, batchSize: plan.batchSize });
        }),
      direct: () =>
        onTarget(async (target) => {
          await target.direct([warmup]);
          const started = performance.now();
          await target.direct(lanes);
          return plan.events / ((performance.now() - started) / 1000);
        }),
    });
    return {
      events_per_s: median(samples.relay),
      direct_per_s: median(samples.direct),
      ratio: medianRatio(samples.relay, samples.direct),
    };
  } finally {
    await outbox.close();
  }
}
