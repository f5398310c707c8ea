import type { Destination, Target } from '../destinations/destination.ts';
import { measuredDrain } from '../relay-drain.ts';
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
  /** This process's CPU time per event while the relay drained (median of the rounds). */
  readonly cpu_us_per_event: number;
  /** The same while the direct client sent the same events. */
  readonly direct_cpu_us_per_event: number;
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
    const cpu = { relay: [] as number[], direct: [] as number[] };
    const samples = await sideBySide(`drain.${destination.name}`, plan.rounds, {
      relay: (round) =>
        onTarget(async (target) => {
          const transport = target.transport();
          await transport.send(warmup, AbortSignal.timeout(30_000));
          const run = await measuredDrain(outbox, { name: `${destination.name}-${round}`, transport, events: plan.events, batchSize: plan.batchSize });
          cpu.relay.push(run.cpuUsPerEvent);
          return run.perSecond;
        }),
      direct: () =>
        onTarget(async (target) => {
          await target.direct([warmup]);
          const started = performance.now();
          const cpuAtStart = process.cpuUsage();
          await target.direct(lanes);
          const seconds = (performance.now() - started) / 1000;
          const used = process.cpuUsage(cpuAtStart);
          cpu.direct.push((used.user + used.system) / plan.events);
          return plan.events / seconds;
        }),
    });
    return {
      events_per_s: median(samples.relay),
      direct_per_s: median(samples.direct),
      ratio: medianRatio(samples.relay, samples.direct),
      cpu_us_per_event: median(cpu.relay),
      direct_cpu_us_per_event: median(cpu.direct),
    };
  } finally {
    await outbox.close();
  }
}
