/**
 * The fast-check model (testing.md §3): commands interleaving business transactions — commit,
 * rollback, transactions left open and ended later in any order, concurrent ones, many keys,
 * publishes without NOTIFY, connections cut during COMMIT — with the faults a destination supports.
 */
import fc from 'fast-check';
import type { Business, TransactionSpec } from './business.ts';
import { withDeadline } from './deadline.ts';
import type { Destination, FaultKind, ReceiverFailure } from './destination.ts';
import type { HistoryRecorder } from './history.ts';

export interface Model {
  open: number;
  down: boolean;
  live: number;
  paused: number;
}

export interface Real {
  readonly business: Business;
  readonly destination: Destination;
  readonly recorder: HistoryRecorder;
}

type Command = fc.AsyncCommand<Model, Real, boolean>;

/** Most transactions left open at once. */
const maxOpen = 3;
/** Most relay workers at once (the box is shared: keep processes few). */
const maxWorkers = 2;

const keys = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5'];

const specArb: fc.Arbitrary<TransactionSpec> = fc.record({
  keys: fc.array(fc.constantFrom(...keys), { minLength: 1, maxLength: 3 }),
  // A quarter of the transactions publish without NOTIFY: only polling finds them.
  silent: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
});
const endArb = fc.constantFrom<'commit' | 'rollback'>('commit', 'commit', 'rollback');

const show = (spec: TransactionSpec): string => `${spec.keys.join(',')}${spec.silent ? ' silent' : ''}`;

/** Longest a single command may take (a pause and its continuation, a worker starting, included). */
const commandDeadlineMs = 60_000;

function command(toString: string, check: (m: Readonly<Model>) => boolean, run: (m: Model, r: Real) => Promise<void>): Command {
  return { check, run: (m, r) => withDeadline(`command ${toString}`, commandDeadlineMs, run(m, r)), toString: () => toString };
}

const commit = specArb.map((spec) => command(`commit(${show(spec)})`, () => true, (_m, r) => r.business.run(spec, 'commit')));
const rollback = specArb.map((spec) => command(`rollback(${show(spec)})`, () => true, (_m, r) => r.business.run(spec, 'rollback')));
const begin = specArb.map((spec) =>
  command(`begin(${show(spec)})`, (m) => m.open < maxOpen, async (m, r) => {
    await r.business.begin(spec);
    m.open = r.business.open.length;
  }),
);
const finish = fc.tuple(fc.nat({ max: maxOpen - 1 }), endArb).map(([index, end]) =>
  command(`finish(open #${index}, ${end})`, (m) => m.open > 0, async (m, r) => {
    await r.business.finish(index, end);
    m.open = r.business.open.length;
  }),
);
const commitCut = fc.tuple(specArb, fc.integer({ min: 0, max: 80 })).map(([spec, ms]) =>
  command(`commitWithConnectionCut(${show(spec)}, cut after ${ms} ms)`, () => true, (_m, r) => r.business.commitCut(spec, ms)),
);
const concurrently = fc.array(fc.tuple(specArb, endArb), { minLength: 2, maxLength: 4 }).map((list) =>
  command(`concurrently(${list.map(([s, e]) => `${e} ${show(s)}`).join('; ')})`, () => true, (_m, r) =>
    r.business.concurrently(list.map(([spec, end]) => ({ ...spec, end }))),
  ),
);
const earlyIdLateCommit = specArb.map((spec) =>
  command(`earlyIdLateCommit(${show(spec)})`, () => true, (_m, r) => r.business.earlyIdLateCommit(spec)),
);
const wait = fc.integer({ min: 20, max: 400 }).map((ms) => command(`wait(${ms} ms)`, () => true, () => new Promise((resolve) => setTimeout(resolve, ms))));

const business: fc.Arbitrary<Command> = fc.oneof(
  { arbitrary: commit, weight: 6 },
  { arbitrary: rollback, weight: 2 },
  { arbitrary: begin, weight: 3 },
  { arbitrary: finish, weight: 3 },
  { arbitrary: commitCut, weight: 2 },
  { arbitrary: concurrently, weight: 2 },
  { arbitrary: earlyIdLateCommit, weight: 2 },
  { arbitrary: wait, weight: 4 },
);

function faults(kinds: ReadonlySet<FaultKind>): fc.Arbitrary<Command>[] {
  const list: fc.Arbitrary<Command>[] = [];
  const note = (r: Real, name: string, detail?: string): void => r.recorder.fault(name, detail);
  if (kinds.has('crash-relay')) {
    list.push(
      fc.tuple(fc.nat(), fc.boolean()).map(([pick, replace]) =>
        command(`crashRelay(#${pick}${replace ? ', replace' : ''})`, (m) => m.live - m.paused > 0, async (m, r) => {
          const fleet = r.destination.fleet!;
          note(r, 'crash-relay', `worker #${pick}`);
          await fleet.crash(pick);
          if (replace || fleet.live === 0) await fleet.join();
          m.live = fleet.live;
        }),
      ),
    );
  }
  if (kinds.has('pause-relay')) {
    list.push(
      fc.nat().map((pick) =>
        command(`pauseRelay(#${pick})`, (m) => m.paused === 0 && m.live > 0, async (m, r) => {
          note(r, 'pause-relay', `worker #${pick}`);
          await r.destination.fleet!.pause(pick);
          m.paused = r.destination.fleet!.paused;
        }),
      ),
      fc.constant(
        command('continuePausedRelays()', (m) => m.paused > 0, async (m, r) => {
          note(r, 'continue-relays');
          await r.destination.fleet!.resume();
          m.paused = r.destination.fleet!.paused;
        }),
      ),
    );
  }
  if (kinds.has('join-relay')) {
    list.push(
      fc.constant(
        command('joinRelay()', (m) => m.live < maxWorkers, async (m, r) => {
          note(r, 'join-relay');
          await r.destination.fleet!.join();
          m.live = r.destination.fleet!.live;
        }),
      ),
    );
  }
  if (kinds.has('cut-broker')) {
    list.push(fc.constant(command('cutBrokerConnections()', () => true, async (_m, r) => (note(r, 'cut-broker'), r.destination.cutBroker!()))));
  }
  if (kinds.has('broker-outage')) {
    list.push(
      fc.constant(
        command('brokerDown()', (m) => !m.down, async (m, r) => {
          note(r, 'broker-down');
          await r.destination.brokerDown!();
          m.down = true;
        }),
      ),
      fc.constant(
        command('brokerUp()', (m) => m.down, async (m, r) => {
          note(r, 'broker-up');
          await r.destination.brokerUp!();
          m.down = false;
        }),
      ),
    );
  }
  if (kinds.has('cut-relay-db')) {
    list.push(fc.constant(command('cutRelayDatabaseConnections()', () => true, async (_m, r) => (note(r, 'cut-relay-db'), r.destination.cutRelayDatabase!()))));
  }
  if (kinds.has('receiver-failures')) {
    list.push(
      fc.tuple(fc.constantFrom<ReceiverFailure>('500', 'timeout', 'slow'), fc.integer({ min: 1, max: 5 })).map(([mode, count]) =>
        command(`receiverFails(${mode} ×${count})`, () => true, async (_m, r) => {
          note(r, 'receiver-failures', `${mode} ×${count}`);
          await r.destination.receiverFailures!(mode, count);
        }),
      ),
    );
  }
  if (kinds.has('duplicate-delivery')) {
    list.push(
      fc.integer({ min: 1, max: 4 }).map((count) =>
        command(`duplicateDelivery(next ${count})`, () => true, async (_m, r) => {
          note(r, 'duplicate-delivery', `next ${count}`);
          await r.destination.duplicateDelivery!(count);
        }),
      ),
    );
  }
  if (kinds.has('consumer-crash')) {
    list.push(
      fc.constant(
        command('consumerCrashBetweenCommitAndAck()', () => true, async (_m, r) => {
          note(r, 'consumer-crash');
          await r.destination.consumerCrash!();
        }),
      ),
    );
  }
  return list;
}

/** Fewest and most transactions of a burst. */
const burstSize = { minLength: 20, maxLength: 30 };

/**
 * A burst: 20 to 30 transactions (a third of them rolled back), one to four at a time so that their
 * commits interleave. Soak cases are mostly bursts, so that a history reaches hundreds of
 * transactions while the faults between the bursts still land throughout it.
 */
const burst = fc.tuple(fc.array(fc.tuple(specArb, endArb), burstSize), fc.integer({ min: 1, max: 4 })).map(([list, width]) =>
  command(`burst(${list.length} transactions, ${width} at a time)`, () => true, async (_m, r) => {
    for (let i = 0; i < list.length; i += width) {
      await r.business.concurrently(list.slice(i, i + width).map(([spec, end]) => ({ ...spec, end })));
    }
  }),
);

/**
 * Sequences of business transactions and faults, from a third of `maxCommands` to `maxCommands`
 * long. With `minTransactions` (the soak), bursts are spread evenly among those commands until
 * the bursts alone hold at least that many transactions.
 */
export function commandsArbitrary(kinds: readonly FaultKind[], maxCommands: number, minTransactions = 0): fc.Arbitrary<Iterable<Command>> {
  const least = Math.ceil(maxCommands / 3);
  const injected = faults(new Set(kinds));
  // Three business commands for every two faults.
  const arbitrary = injected.length === 0 ? business : fc.oneof({ arbitrary: business, weight: 3 }, { arbitrary: fc.oneof(...injected), weight: 2 });
  const commands = fc.commands([arbitrary], { maxCommands, size: 'max' }).filter((list) => [...list].length >= least);
  if (minTransactions === 0) return commands;
  const bursts = Math.ceil(minTransactions / burstSize.minLength);
  return fc.tuple(commands, fc.array(burst, { minLength: bursts, maxLength: bursts })).map(([list, extra]) => interleave([...list], extra));
}

/** `bursts` spread evenly before, between and after `commands`, printed as one sequence. */
function interleave(commands: readonly Command[], bursts: readonly Command[]): Iterable<Command> {
  const all: Command[] = [];
  let next = 0;
  for (let i = 0; i <= commands.length; i++) {
    const due = Math.round(((i + 1) * bursts.length) / (commands.length + 1));
    while (next < due) all.push(bursts[next++]!);
    if (i < commands.length) all.push(commands[i]!);
  }
  const sequence: Iterable<Command> & { toString(): string } = { [Symbol.iterator]: () => all[Symbol.iterator](), toString: () => all.map(String).join(', ') };
  return sequence;
}
