/**
 * Runs the model against one destination (testing.md §2-3): each fast-check case gets a fresh
 * outbox schema, its relay workers and consumer, runs its commands, heals every fault, drains until
 * everything committed arrived or nothing moves any more, and judges the history. A failing case
 * writes its history as JSON under test/property/.histories/ and fails with the anomalies; fast-check
 * adds the seed and path to replay it (TIDINGS_PROPERTY_SEED, TIDINGS_PROPERTY_PATH).
 */
import { migrateInbox } from '@tidings/inbox';
import fc from 'fast-check';
import { mkdir, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { freshOutbox } from '../support/db.ts';
import { Business } from './business.ts';
import { anomalies, summary } from './checkers.ts';
import type { Destination, DestinationSpec, Observation } from './destination.ts';
import { HistoryRecorder } from './history.ts';
import { withDeadline } from './deadline.ts';
import { createEffects } from './inbox-consumer.ts';
import { commandsArbitrary, type Model, type Real } from './model.ts';
import { settings } from './settings.ts';
import { swallowAnomalies } from './swallow-checker.ts';
import { createSwallowProbe, showPlan, swallowPlanArbitrary, Swallower, type SwallowPlan } from './swallow.ts';

const historiesDir = fileURLToPath(new URL('./.histories/', import.meta.url));

export async function runProperty(spec: DestinationSpec): Promise<void> {
  const config = settings(spec.ciRuns);
  let run = 0;
  const property = fc.asyncProperty(commandsArbitrary(spec.faults, config.maxCommands, config.minTransactions), swallowPlanArbitrary(config.minTransactions), async (commands, plan) => {
    run++;
    const started = Date.now();
    const world = await withDeadline(`setting up the ${spec.name} run`, 90_000, createWorld(spec, config.leaseMs, plan));
    const generated = `${String(commands)}; ${showPlan(plan)}`;
    const real: Real = { business: world.business, destination: world.destination, recorder: world.recorder };
    let failure: unknown;
    try {
      const live = world.destination.fleet?.live ?? 0;
      await fc.asyncModelRun(() => ({ model: { open: 0, down: false, live, paused: 0 } satisfies Model, real }), commands);
      await withDeadline('healing the faults', 60_000, settle(world.business, world.destination));
      const observation = await withDeadline('draining', 180_000, drain(world.recorder, world.destination, spec.quietMs ?? 4_000));
      const history = world.recorder.history(observation.arrivals, observation.effects, (id) => world.swallower.runsOf(id));
      const found = [
        ...anomalies(history, { ordered: spec.ordered, orderedEffects: spec.orderedEffects ?? false }),
        ...swallowAnomalies(history),
        ...(world.destination.fleet?.problems() ?? []),
        ...(world.destination.problems?.() ?? []),
      ];
      if (config.verbose) console.log(`[${spec.name} #${run}] ${summary(history)}, ${history.swallowed?.length ?? 0} swallowed SQL errors in ${Date.now() - started} ms`);
      if (found.length > 0) {
        const file = await saveHistory(spec.name, config.seed, run, generated, found, history);
        throw new Error(
          `${spec.name}, run ${run}:\n  ${found.join('\n  ')}\n  (${summary(history)}; history written to ${file}; ` +
            `replay with TIDINGS_PROPERTY_SEED=${config.seed} TIDINGS_PROPERTY_PATH=${config.path ?? run - 1})`,
        );
      }
    } catch (error) {
      failure = error;
      if (!(error instanceof Error && error.message.startsWith(`${spec.name}, run`))) {
        await saveHistory(spec.name, config.seed, run, generated, [String(error)], world.recorder.history([], [])).catch(() => {});
      }
      throw error;
    } finally {
      // A hanging close is a failure of its own, unless the run already failed for a better reason.
      await world.close().catch((error: unknown) => {
        if (failure === undefined) throw error;
      });
    }
  });
  await fc.assert(property, {
    numRuns: config.runs,
    seed: config.seed,
    path: config.path,
    endOnFailure: true,
    // Each case is seconds of real processes and brokers: report the first failure, unshrunk.
    interruptAfterTimeLimit: config.timeLimitMs,
    markInterruptAsFailure: false,
  });
}

interface World {
  readonly recorder: HistoryRecorder;
  readonly swallower: Swallower;
  readonly business: Business;
  readonly destination: Destination;
  close(): Promise<void>;
}

async function createWorld(spec: DestinationSpec, leaseMs: number, plan: SwallowPlan): Promise<World> {
  const outbox = await freshOutbox(`p_${spec.name}`, { partitions: 2 });
  const { schema, pool } = outbox;
  let destination: Destination | undefined;
  try {
    await migrateInbox(outbox.db, { schema });
    await Business.migrate(pool, schema);
    await createEffects(pool, schema);
    await createSwallowProbe(pool, schema);
    const recorder = new HistoryRecorder(spec.name);
    const swallower = new Swallower(plan, schema, recorder);
    const topic = `p.${spec.name}.${randomBytes(4).toString('hex')}`;
    const business = new Business({ pool, schema, topic, recorder });
    destination = await spec.create({ outbox, schema, topic, relay: 'property', leaseMs, swallower });
    await destination.fleet?.join();
    const built = destination;
    const step = (what: string, work: () => Promise<unknown>): Promise<unknown> => withDeadline(`closing the run: ${what}`, 30_000, work());
    return {
      recorder,
      swallower,
      business,
      destination: built,
      async close() {
        const hangs: unknown[] = [];
        await step('ending open transactions', () => business.finishAll()).catch(() => {});
        await step('stopping the relay workers', async () => built.fleet?.close()).catch((error: unknown) => hangs.push(error));
        await step('closing the destination', () => built.close()).catch((error: unknown) => hangs.push(error));
        await step('dropping the schema', () => outbox.close()).catch((error: unknown) => hangs.push(error));
        if (hangs.length > 0) throw hangs[0];
      },
    };
  } catch (error) {
    await destination?.fleet?.close().catch(() => {});
    await destination?.close().catch(() => {});
    await outbox.close().catch(() => {});
    throw error;
  }
}

/** Ends what the commands left on: open transactions commit, paused workers go on, the broker returns. */
async function settle(business: Business, destination: Destination): Promise<void> {
  await business.finishAll();
  await destination.heal();
  const fleet = destination.fleet;
  if (fleet) {
    await fleet.resume();
    if (fleet.live === 0) await fleet.join();
  }
}

/**
 * Waits until every committed event arrived and took effect (then a moment more, for late
 * duplicates), or until nothing moved for `quietMs` (a lost event never comes), at most two minutes.
 * Events a handler swallowed an error on count as committed (the consumer read them, whatever the
 * client of their transaction saw): they must take effect too.
 */
async function drain(recorder: HistoryRecorder, destination: Destination, quietMs: number): Promise<Observation> {
  const committed = recorder.committedIds();
  const started = Date.now();
  let lastSize = -1;
  let lastChange = Date.now();
  for (;;) {
    const expected = [...new Set([...committed, ...recorder.swallowedIds()])];
    const observation = await destination.observe();
    const arrived = new Set(observation.arrivals.map((a) => a.eventId));
    const applied = new Set(observation.effects.map((e) => e.eventId));
    if (expected.every((id) => arrived.has(id) && applied.has(id))) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      return destination.observe();
    }
    const size = observation.arrivals.length + observation.effects.length;
    if (size !== lastSize) {
      lastSize = size;
      lastChange = Date.now();
    }
    if (Date.now() - lastChange > quietMs || Date.now() - started > 120_000) return observation;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function saveHistory(name: string, seed: number, run: number, commands: string, found: string[], history: unknown): Promise<string> {
  await mkdir(historiesDir, { recursive: true });
  const file = `${historiesDir}${name}-seed${seed}-run${run}.json`;
  await writeFile(file, JSON.stringify({ destination: name, seed, run, commands, anomalies: found, history }, null, 2));
  return file;
}
