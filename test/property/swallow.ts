/**
 * Handlers that swallow SQL errors (testing.md §3): a handler runs a statement that fails — a
 * unique violation, a division by zero — catches the error and returns normally. PostgreSQL has
 * aborted the transaction by then, so its COMMIT rolls back the effect and the inbox mark (or the
 * checkpoint) together; a consumer that took that COMMIT for a success would acknowledge an event
 * it never applied.
 *
 * Which deliveries swallow is part of the generated case, so a failing case replays from its
 * seed: a {@link SwallowPlan} names events by the business transaction that published them and
 * their place in it (the `{ tx, i }` of their payload, fixed by the case), and the handler runs of
 * each event (1 = the first) that swallow. Every consumer of a run shares one {@link Swallower},
 * which counts the runs and records each swallowed delivery in the history.
 */
import fc from 'fast-check';
import type { HistoryRecorder } from './history.ts';
import type { Queryable } from './inbox-consumer.ts';

/** The failing statement a swallowing handler runs. */
export type SwallowStatement = 'unique-violation' | 'division-by-zero';

/**
 * Where the handler swallows: after writing its effect (the effect is rolled back with the rest),
 * or before it (the effect's INSERT then fails too, "current transaction is aborted", and the
 * handler, which catches every error, swallows that as well).
 */
export type SwallowPlace = 'after-effect' | 'before-effect';

export interface SwallowTarget {
  /** The business transaction (its number in the history) that published the event. */
  readonly tx: number;
  /** The event's place among that transaction's events. */
  readonly index: number;
  /** The handler runs for this event that swallow: 1 is the first delivery, 2 the next, ... */
  readonly runs: readonly number[];
  readonly statement: SwallowStatement;
  readonly place: SwallowPlace;
}

/** The swallowing handler runs of one case; empty in a case without any. */
export type SwallowPlan = readonly SwallowTarget[];

/** Most transactions a target may name in CI: a case runs about four to eight. */
const ciMaxTx = 6;

const targetArbitrary = (maxTx: number): fc.Arbitrary<SwallowTarget> => fc.record({
  tx: fc.integer({ min: 1, max: maxTx }),
  // Every transaction has a first event; half of them a second.
  index: fc.constantFrom(0, 0, 0, 1),
  // Mostly the first delivery; sometimes the retry after it too, or only a later delivery (one
  // that follows a crash, a cut connection or a racing duplicate).
  runs: fc.constantFrom<readonly number[]>([1], [1], [1], [1, 2], [1, 2, 3], [2]),
  statement: fc.constantFrom<SwallowStatement>('unique-violation', 'division-by-zero'),
  place: fc.constantFrom<SwallowPlace>('after-effect', 'after-effect', 'before-effect'),
});

/**
 * Two cases out of three have one to four swallowing targets; the third has none, so a run also
 * shows the consumers untroubled by them. Swallowing rides along existing cases rather than adding
 * cases of its own.
 */
export function swallowPlanArbitrary(minTransactions = 0): fc.Arbitrary<SwallowPlan> {
  // A soak case names transactions anywhere in its history, and a few more targets.
  const maxTx = Math.max(ciMaxTx, minTransactions);
  return fc.oneof(
    { arbitrary: fc.constant([]), weight: 1 },
    { arbitrary: fc.array(targetArbitrary(maxTx), { minLength: 1, maxLength: minTransactions > 0 ? 12 : 4 }), weight: 2 },
  );
}

export function showPlan(plan: SwallowPlan): string {
  if (plan.length === 0) return 'no handler swallows';
  return plan.map((t) => `tx #${t.tx} event ${t.index} run ${t.runs.join('+')}: ${t.statement} ${t.place}`).join('; ');
}

/** The table a `unique-violation` inserts into: it already holds the row. */
export async function createSwallowProbe(pool: Queryable, schema: string): Promise<void> {
  await pool.query(`CREATE TABLE IF NOT EXISTS "${schema}".swallow_probe (id int PRIMARY KEY)`);
  await pool.query(`INSERT INTO "${schema}".swallow_probe (id) VALUES (1) ON CONFLICT DO NOTHING`);
}

/** What a handler knows of the event it applies. */
export interface HandledEvent {
  readonly eventId: string;
  readonly payload: unknown;
}

function placeOf(payload: unknown): { tx: number; index: number } | undefined {
  const p = payload as { tx?: unknown; i?: unknown } | null;
  if (typeof p !== 'object' || p === null || typeof p.tx !== 'number' || typeof p.i !== 'number') return undefined;
  return { tx: p.tx, index: p.i };
}

/** Runs the handlers of one case, swallowing a SQL error on the runs its plan names. */
export class Swallower {
  readonly #plan: SwallowPlan;
  readonly #schema: string;
  readonly #recorder: HistoryRecorder;
  readonly #runs = new Map<string, number>();

  constructor(plan: SwallowPlan, schema: string, recorder: HistoryRecorder) {
    this.#plan = plan;
    this.#schema = schema;
    this.#recorder = recorder;
  }

  /**
   * The handler of a consumer: `apply` writes the event's effect in `trx`. On a run the plan names,
   * it also runs a failing statement and catches the error, as a handler that "handles" a database
   * error would, and returns normally.
   */
  async handle(trx: Queryable, event: HandledEvent, apply: () => Promise<void>): Promise<void> {
    const run = (this.#runs.get(event.eventId) ?? 0) + 1;
    this.#runs.set(event.eventId, run);
    const place = placeOf(event.payload);
    const target = place && this.#plan.find((t) => t.tx === place.tx && t.index === place.index && t.runs.includes(run));
    if (!target) return apply();
    if (target.place === 'after-effect') {
      await apply();
      await this.#swallow(trx, event, run, target);
    } else {
      await this.#swallow(trx, event, run, target);
      await apply().catch(() => {});
    }
  }

  /** How many times a handler ran for the event. */
  runsOf(eventId: string): number {
    return this.#runs.get(eventId) ?? 0;
  }

  async #swallow(trx: Queryable, event: HandledEvent, run: number, target: SwallowTarget): Promise<void> {
    const sql = target.statement === 'unique-violation' ? `INSERT INTO "${this.#schema}".swallow_probe (id) VALUES (1)` : 'SELECT 1/0';
    try {
      await trx.query(sql);
    } catch (error) {
      // Only a statement PostgreSQL refused aborts the transaction; a broken connection fails the
      // COMMIT anyway and is no swallowed error.
      const code = (error as { code?: unknown } | null)?.code;
      if (code === '23505' || code === '22012') this.#recorder.swallowed({ eventId: event.eventId, run, statement: target.statement, place: target.place });
      return;
    }
    throw new Error(`the swallowing handler's statement (${sql}) did not fail; is the swallow_probe table missing its row?`);
  }
}
