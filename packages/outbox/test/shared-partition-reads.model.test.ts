import { comparePositions, logStart, publish, readPartition, type OutboxEvent, type Position, type ReadOptions, type ReadResult } from '@tidings/outbox';
import { SharedPartitionReads } from '@tidings/outbox/internal';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { settings } from '../../../test/property/settings.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';

/**
 * A model-based test of the shared reads: runners with their own cursors, filters and page sizes
 * read one log while transactions commit, and every page the shared reads hand a runner is judged
 * against the plain `readPartition` (the unshared reader) at the same cursor. The tail is tiny, so
 * that runners fall behind it and the tail moves under them. Every commit wakes the shared reads of
 * its partitions, as the dispatcher's NOTIFY listener does, unless its NOTIFY is lost (a quiet
 * commit): until a wake-up (a poll) announces it, a runner may be told "nothing new", which the
 * plain reader would not say, so those pages are judged only against the log.
 *
 * A failure prints fast-check's seed and path: replay it with TIDINGS_PROPERTY_SEED and
 * TIDINGS_PROPERTY_PATH (test/property/settings.ts); TIDINGS_PROPERTY_RUNS sets the number of cases.
 */

const topics = ['orders.created', 'orders.paid', 'users.created'];
const tenants = [null, 'acme', 'globex'];
const filters = ['orders.*', 'orders.paid', 'users.created', 'nothing.*'];
const partitions = [0, 1];
/** Enough for any read the model makes in one case. */
const everything = 1_000_000;

const { runs, seed, path } = settings(100);
// About 50 ms a case; a slow machine gets twenty times that.
const timeoutMs = 60_000 + runs * 1_000;

let outbox: TestOutbox;
/** Where each partition's log ends now (advanced after every commit of the test). */
const ends = new Map<number, Position>();

beforeAll(async () => {
  outbox = await freshOutbox('shared_model', { partitions: partitions.length });
  for (const partition of partitions) ends.set(partition, logStart);
});
afterAll(() => outbox.close());

const eventArb = fc.record({ key: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'), topic: fc.constantFrom(...topics), tenant: fc.constantFrom(...tenants) });
const transactionArb = fc.array(eventArb, { minLength: 1, maxLength: 5 });

const runnerArb = fc.record({
  partition: fc.constantFrom(...partitions),
  limit: fc.integer({ min: 1, max: 5 }),
  topics: fc.option(fc.subarray(filters, { minLength: 1 }), { nil: undefined }),
  tenant: fc.option(fc.constantFrom('acme', 'globex'), { nil: undefined }),
  // Where the runner starts: before every event of the case (far behind), after its n-th event
  // of the partition, or at the end of the log when the shared reads begin.
  from: fc.oneof(fc.constant('case-start' as const), fc.constant('now' as const), fc.nat(30)),
});

const commandArb = fc.oneof(
  // A quiet commit is one whose NOTIFY was lost: only a later wake-up (a poll) announces it.
  { weight: 3, arbitrary: fc.record({ type: fc.constant('publish' as const), events: transactionArb, quiet: fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }) }) },
  // Runners reading at once: the sharing only matters when reads meet; sometimes a transaction
  // commits while they read.
  {
    weight: 5,
    arbitrary: fc.record({
      type: fc.constant('read' as const),
      runners: fc.uniqueArray(fc.nat(5), { minLength: 1, maxLength: 6 }),
      advance: fc.boolean(),
      during: fc.option(transactionArb, { nil: undefined, freq: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('wake' as const), partition: fc.option(fc.constantFrom(...partitions), { nil: undefined }) }) },
);

const caseArb = fc.record({
  // Small, so that runners fall behind what the tail keeps and the tail has to catch up.
  tail: fc.record({ readLimit: fc.integer({ min: 1, max: 4 }), capacity: fc.integer({ min: 1, max: 8 }) }),
  prelude: fc.array(transactionArb, { maxLength: 6 }),
  runners: fc.array(runnerArb, { minLength: 2, maxLength: 5 }),
  commands: fc.array(commandArb, { minLength: 1, maxLength: 25 }),
});

interface Runner {
  readonly name: string;
  readonly options: Omit<ReadOptions, 'after'>;
  readonly start: Position;
  cursor: Position;
  /** The page of its last read, not yet taken. */
  page: ReadResult | undefined;
  /** Every event of the pages it took, in order. */
  readonly taken: OutboxEvent[];
}

/** Commits `events` and brings `ends` up to date; returns the partitions the commit touched. */
async function commit(events: readonly { key: string; topic: string; tenant: string | null }[]): Promise<Set<number>> {
  const published = await inTransaction(outbox.pool, (client) =>
    publish(
      client,
      events.map((e, i) => ({ ...e, payload: { i } })),
      { schema: outbox.schema, notify: false },
    ),
  );
  const touched = new Set(published.map((e) => e.partition));
  for (const partition of touched) ends.set(partition, (await readPartition(outbox.db, outbox.schema, { partition, after: ends.get(partition)!, limit: everything })).scannedTo);
  return touched;
}

const ids = (events: readonly OutboxEvent[]) => events.map((e) => e.eventId);
const at = (p: Position) => `${p.seq}/${p.id}`;

/**
 * Judges one page the shared reads gave `runner` at its cursor: against the filtered log up to where
 * the page says it looked, and, when no transaction committed during the read (`settled`), against
 * the plain reader's page at the same cursor.
 */
async function judgePage(runner: Runner, options: ReadOptions, page: ReadResult, settled: boolean): Promise<void> {
  const context = `${runner.name} after ${at(options.after)} limit ${options.limit} topics ${JSON.stringify(options.topics)} tenant ${options.tenant}`;
  const plain = await readPartition(outbox.db, outbox.schema, options);
  const { events: rest, scannedTo: end } = await readPartition(outbox.db, outbox.schema, { ...options, limit: everything });
  expect(comparePositions(page.scannedTo, end), `${context}: scannedTo ${at(page.scannedTo)} beyond the end of the log ${at(end)}`).toBeLessThanOrEqual(0);
  expect(page.events.length, `${context}: page larger than its limit`).toBeLessThanOrEqual(options.limit);
  expect(comparePositions(page.scannedTo, options.after), `${context}: scannedTo ${at(page.scannedTo)} went back`).toBeGreaterThanOrEqual(0);
  // Exactly the filtered log up to where it says it looked: nothing skipped, nothing extra.
  const upTo = ids(rest.filter((e) => comparePositions(e.position, page.scannedTo) <= 0));
  const got = ids(page.events);
  const skipped = upTo.filter((id) => !got.includes(id));
  const unexpected = got.filter((id) => !upTo.includes(id));
  expect({ skipped, unexpected }, `${context}: the page against the filtered log up to ${at(page.scannedTo)}`).toEqual({ skipped: [], unexpected: [] });
  expect(got, `${context}: the page is the filtered log out of order`).toEqual(upTo);
  if (!settled) return;
  expect(comparePositions(page.scannedTo, plain.scannedTo), `${context}: scannedTo ${at(page.scannedTo)} beyond the plain read's ${at(plain.scannedTo)}`).toBeLessThanOrEqual(0);
  expect(ids(page.events), `${context}: the page is not a prefix of the plain read's`).toEqual(ids(plain.events).slice(0, page.events.length));
  if (!page.more) {
    expect({ events: ids(page.events), scannedTo: page.scannedTo, more: false }, `${context}: a last page differs from the plain read`).toEqual({
      events: ids(plain.events),
      scannedTo: plain.scannedTo,
      more: plain.more,
    });
  }
}

/** `runner` reads at its cursor through `shared` and the page is judged. */
async function readAndJudge(shared: SharedPartitionReads, runner: Runner, settled: boolean): Promise<void> {
  const options: ReadOptions = { ...runner.options, after: runner.cursor };
  runner.page = await shared.read(options);
  await judgePage(runner, options, runner.page, settled);
}

function take(runner: Runner): void {
  if (runner.page === undefined) return;
  runner.taken.push(...runner.page.events);
  runner.cursor = runner.page.scannedTo;
  runner.page = undefined;
}

describe('shared partition reads against the plain reader (model)', () => {
  it('hand every runner, whatever its cursor, filter and page size and whoever reads beside it, the pages readPartition reads: concatenated, its filtered log in commit order', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async ({ tail, prelude, runners: specs, commands }) => {
        const caseStart = new Map(ends);
        for (const events of prelude) await commit(events);
        const caseEvents = new Map<number, OutboxEvent[]>();
        for (const partition of partitions) caseEvents.set(partition, (await readPartition(outbox.db, outbox.schema, { partition, after: caseStart.get(partition)!, limit: everything })).events);
        const runners: Runner[] = specs.map(({ from, partition, ...options }, i) => {
          const own = caseEvents.get(partition)!;
          const start =
            from === 'case-start' ? caseStart.get(partition)! : from === 'now' || own.length === 0 ? ends.get(partition)! : own[from % own.length]!.position;
          return { name: `runner ${i} (partition ${partition}, from ${from})`, options: { partition, ...options }, start, cursor: start, page: undefined, taken: [] };
        });
        const shared = new SharedPartitionReads(outbox.db, outbox.schema, tail);
        /** Partitions with a commit that no wake-up announced yet: their runners may be told "nothing new". */
        const unannounced = new Set<number>();
        const wake = (partition?: number) => {
          shared.wake(partition);
          if (partition === undefined) unannounced.clear();
          else unannounced.delete(partition);
        };
        try {
          for (const command of commands) {
            if (command.type === 'publish') {
              // What the dispatcher's NOTIFY listener does after a commit.
              for (const partition of await commit(command.events)) {
                if (command.quiet) unannounced.add(partition);
                else wake(partition);
              }
            } else if (command.type === 'wake') {
              wake(command.partition);
            } else {
              const readers = [...new Set(command.runners.map((i) => runners[i % runners.length]!))];
              if (command.during === undefined) {
                await Promise.all(readers.map((runner) => readAndJudge(shared, runner, !unannounced.has(runner.options.partition))));
              } else {
                const asked = readers.map((runner) => ({ ...runner.options, after: runner.cursor }));
                const [, pages] = await Promise.all([
                  commit(command.during).then((touched) => touched.forEach((partition) => wake(partition))),
                  Promise.all(asked.map((options) => shared.read(options))),
                ]);
                for (const [i, runner] of readers.entries()) {
                  runner.page = pages[i]!;
                  await judgePage(runner, asked[i]!, runner.page, false);
                }
              }
              if (command.advance) for (const runner of readers) take(runner);
            }
          }
          // The poll announces what no NOTIFY did; then every runner reads to the end, all at once.
          wake();
          for (const runner of runners) take(runner);
          await Promise.all(
            runners.map(async (runner) => {
              for (let pages = 0; ; pages++) {
                expect(pages, `${runner.name} never reached the end of the log`).toBeLessThan(1_000);
                await readAndJudge(shared, runner, true);
                const more = runner.page!.more;
                take(runner);
                if (!more) return;
              }
            }),
          );
          for (const runner of runners) {
            const expected = await readPartition(outbox.db, outbox.schema, { ...runner.options, after: runner.start, limit: everything });
            expect(ids(runner.taken), `${runner.name}: its pages, concatenated, are not its filtered log in commit order`).toEqual(ids(expected.events));
            expect(runner.cursor, `${runner.name} ended elsewhere than the end of the log`).toEqual(expected.scannedTo);
          }
        } finally {
          shared.close();
        }
      }),
      { numRuns: runs, seed, path, endOnFailure: path !== undefined },
    );
  }, timeoutMs);
});
