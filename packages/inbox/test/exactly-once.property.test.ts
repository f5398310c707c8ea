import { inbox, type Inbox } from '@tidings/inbox';
import type { TransactionHandle } from '@tidings/outbox';
import fc from 'fast-check';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyWithPg, freshSchema, type TestDb } from './support.ts';

/**
 * Random histories of deliveries: the same events delivered again and again, sequentially and
 * concurrently, in transactions that commit, roll back, or whose handler throws. Whatever the
 * history, every event of a committed delivery must be applied exactly once, and nothing else.
 */

type Outcome = 'commit' | 'rollback' | 'handler-throws';
interface Delivery {
  readonly events: readonly string[];
  readonly outcome: Outcome;
  readonly driver: 'kysely' | 'pg';
}
/** Deliveries of one round run concurrently; rounds run one after another. */
type History = readonly (readonly Delivery[])[];

const eventIds = ['e0', 'e1', 'e2', 'e3', 'e4'];
const delivery: fc.Arbitrary<Delivery> = fc.record({
  // Sorted, so concurrent transactions take the dedup locks in one order and never deadlock.
  events: fc.array(fc.constantFrom(...eventIds), { minLength: 1, maxLength: 3 }).map((ids) => [...ids].sort()),
  outcome: fc.constantFrom<Outcome>('commit', 'commit', 'rollback', 'handler-throws'),
  driver: fc.constantFrom<'kysely' | 'pg'>('kysely', 'pg'),
});
const history: fc.Arbitrary<History> = fc.array(fc.array(delivery, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 6 });

class PlannedFailure extends Error {}

interface Verdict {
  readonly missing: string[];
  readonly unexpected: string[];
  readonly duplicated: string[];
  readonly misreported: string[];
}

/** Pure checker: what the history promises against what the database and the callers saw. */
export function judge(history: History, effects: ReadonlyMap<string, number>, appliedReports: ReadonlyMap<string, number>): Verdict {
  const committed = new Set(history.flat().filter((d) => d.outcome === 'commit').flatMap((d) => d.events));
  const all = new Set([...committed, ...effects.keys()]);
  return {
    missing: [...all].filter((id) => committed.has(id) && !effects.has(id)).sort(),
    unexpected: [...all].filter((id) => !committed.has(id) && effects.has(id)).sort(),
    duplicated: [...all].filter((id) => (effects.get(id) ?? 0) > 1).sort(),
    // Among committed deliveries, exactly one handle() call per event may have said "applied".
    misreported: [...committed].filter((id) => appliedReports.get(id) !== 1).sort(),
  };
}

describe('exactly-once effects (property)', () => {
  let t: TestDb;
  let run = 0;
  beforeAll(async () => {
    t = await freshSchema();
  });
  afterAll(async () => {
    await t?.drop();
  });

  it('the checker reports missing, unexpected and duplicated effects separately', () => {
    const h: History = [[{ events: ['a', 'b'], outcome: 'commit', driver: 'pg' }, { events: ['c'], outcome: 'rollback', driver: 'pg' }]];
    expect(judge(h, new Map([['a', 2], ['c', 1]]), new Map([['a', 1], ['b', 1]]))).toEqual({
      missing: ['b'],
      unexpected: ['c'],
      duplicated: ['a'],
      misreported: [],
    });
    expect(judge(h, new Map([['a', 1], ['b', 1]]), new Map([['a', 1], ['b', 1]]))).toEqual({
      missing: [],
      unexpected: [],
      duplicated: [],
      misreported: [],
    });
  });

  it('applies every event of a committed delivery exactly once, whatever the history', async () => {
    await fc.assert(
      fc.asyncProperty(history, async (h) => {
        const box = inbox({ consumer: `prop-${++run}`, schema: t.schema });
        const reports = new Map<string, number>();
        for (const round of h) {
          await Promise.all(round.map((d) => deliver(t, box, d, reports)));
        }
        const verdict = judge(h, await t.effectCounts(box.consumer), reports);
        expect(verdict).toEqual({ missing: [], unexpected: [], duplicated: [], misreported: [] });
        const committed = new Set(h.flat().filter((d) => d.outcome === 'commit').flatMap((d) => d.events));
        expect(await t.inboxRows(box.consumer)).toBe(committed.size);
      }),
      { numRuns: 60 },
    );
  });
});

/** Runs one delivery; counts, for committed ones only, the events handle() reported as applied. */
async function deliver(t: TestDb, box: Inbox, d: Delivery, reports: Map<string, number>): Promise<void> {
  const applied: string[] = [];
  const body = async <Trx extends TransactionHandle>(trx: Trx, apply: (trx: Trx, eventId: string) => Promise<void>) => {
    for (const eventId of d.events) {
      const outcome = await box.handle(trx, eventId, async (trx) => {
        await apply(trx, eventId);
        if (d.outcome === 'handler-throws') throw new PlannedFailure('handler fails after writing');
      });
      if (outcome.applied) applied.push(eventId);
    }
    // Also when every event was a duplicate, so no handler ran (and threw).
    if (d.outcome !== 'commit') throw new PlannedFailure('caller rolls back');
  };
  try {
    if (d.driver === 'kysely') {
      await t.kysely.transaction().execute((trx) =>
        body(trx, (trx, eventId) => trx.insertInto('effects').values({ consumer: box.consumer, event_id: eventId }).execute().then(() => {})),
      );
    } else {
      const client: pg.PoolClient = await t.pool.connect();
      try {
        await client.query('BEGIN');
        await body(client, (c, eventId) => applyWithPg(c, t.schema, box.consumer, eventId)).catch(async (error: unknown) => {
          await client.query('ROLLBACK');
          throw error;
        });
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    }
  } catch (error) {
    if (error instanceof PlannedFailure) return;
    throw error;
  }
  for (const eventId of applied) reports.set(eventId, (reports.get(eventId) ?? 0) + 1);
}
