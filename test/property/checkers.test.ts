import { describe, expect, it } from 'vitest';
import { anomalies, checkAtLeastOnce, checkExactlyOnce, checkPerKeyOrder, compareCommitOrder } from './checkers.ts';
import type { Arrival, History, HistoryOp, Outcome, PublishedEvent, TransactionOp } from './history.ts';

// A hand-written history: each transaction lists its events as [eventId, key, version of the key's row, id].
function tx(n: number, outcome: Outcome | undefined, events: [string, string | null, number, number][]): HistoryOp {
  const published: PublishedEvent[] = events.map(([eventId, key, version, id]) => ({ eventId, key, version, id: String(id) }));
  return { type: 'transaction', tx: n, action: 'commit', silent: false, events: published, outcome, invokedAt: n, completedAt: n };
}

const arrived = (...ids: string[]): Arrival[] => ids.map((id) => ({ eventId: id, key: id[0]! }));

function history(ops: HistoryOp[], arrivals: Arrival[], effects: Arrival[] = arrivals): History {
  return { destination: 'the destination', ops, arrivals, effects };
}

// a1, a2 on key "a" (a2's transaction set the key's row to version 2, after a1's); b1 on key "b";
// x1 rolled back; u1 unknown.
const ops = [
  tx(1, 'ok', [['a1', 'a', 1, 1]]),
  tx(2, 'ok', [['b1', 'b', 1, 2], ['a2', 'a', 2, 3]]),
  tx(3, 'fail', [['x1', 'x', 1, 4]]),
  tx(4, 'unknown', [['u1', 'u', 1, 5]]),
];

describe('the at-least-once checker', () => {
  it('passes a history where every committed event arrived and duplicates are only counted', () => {
    const verdict = checkAtLeastOnce(history(ops, arrived('a1', 'b1', 'a1', 'a2')));
    expect(verdict).toEqual({ lost: [], abortedReads: [], unexpected: [], duplicated: { a1: 2 } });
  });

  it('flags a committed event that never arrived as lost', () => {
    expect(checkAtLeastOnce(history(ops, arrived('a1', 'a2'))).lost).toEqual(['b1']);
  });

  it('flags an event of a rolled-back transaction as an aborted read', () => {
    expect(checkAtLeastOnce(history(ops, arrived('a1', 'b1', 'a2', 'x1'))).abortedReads).toEqual(['x1']);
  });

  it('flags an id nobody published as unexpected', () => {
    expect(checkAtLeastOnce(history(ops, arrived('a1', 'b1', 'a2', 'z9'))).unexpected).toEqual(['z9']);
  });

  it('accepts an unknown outcome arriving zero, one or several times', () => {
    for (const extra of [[], ['u1'], ['u1', 'u1']]) {
      const verdict = checkAtLeastOnce(history(ops, arrived('a1', 'b1', 'a2', ...extra)));
      expect(verdict.lost).toEqual([]);
      expect(verdict.abortedReads).toEqual([]);
    }
  });

  it('treats a transaction that never ended as unknown', () => {
    const open = [...ops, tx(5, undefined, [['o1', 'o', 104, 6]])];
    expect(checkAtLeastOnce(history(open, arrived('a1', 'b1', 'a2'))).lost).toEqual([]);
  });
});

describe('the exactly-once effects checker', () => {
  it('passes when each committed event was applied once and the unknown one at most once', () => {
    expect(checkExactlyOnce(history(ops, [], arrived('a1', 'b1', 'a2', 'u1')))).toEqual({
      missing: [],
      duplicateEffects: {},
      abortedEffects: [],
      unexpected: [],
    });
  });

  it('flags an event applied twice as a duplicate effect', () => {
    expect(checkExactlyOnce(history(ops, [], arrived('a1', 'b1', 'a2', 'b1'))).duplicateEffects).toEqual({ b1: 2 });
  });

  it('flags an unknown event applied twice as a duplicate effect', () => {
    expect(checkExactlyOnce(history(ops, [], arrived('a1', 'b1', 'a2', 'u1', 'u1'))).duplicateEffects).toEqual({ u1: 2 });
  });

  it('flags a committed event never applied as missing and a rolled-back one applied as aborted', () => {
    const verdict = checkExactlyOnce(history(ops, [], arrived('a1', 'x1')));
    expect(verdict.missing).toEqual(['b1', 'a2']);
    expect(verdict.abortedEffects).toEqual(['x1']);
  });
});

describe('the per-key order checker', () => {
  it('orders events by the version their transaction gave the key, then row id', () => {
    const at = (version: number, id: number): PublishedEvent => ({ eventId: '', key: null, version, id: String(id) });
    expect(compareCommitOrder(at(9, 1), at(10, 0))).toBe(-1);
    expect(compareCommitOrder(at(10, 2), at(10, 1))).toBe(1);
    expect(compareCommitOrder(at(10, 2), at(10, 2))).toBe(0);
  });

  it('accepts first arrivals in log order, whatever the redeliveries after them', () => {
    expect(checkPerKeyOrder(history(ops, arrived('a1', 'b1', 'a2', 'a1', 'a2')))).toEqual([]);
  });

  it('flags a key whose later event arrived first', () => {
    const [violation] = checkPerKeyOrder(history(ops, arrived('b1', 'a2', 'a1')));
    expect(violation).toMatchObject({ key: 'a', overtaking: 'a2', overtaken: 'a1', expected: ['a1', 'a2'], actual: ['a2', 'a1'] });
  });

  it('uses commit order (the versions), not the order of the events in the log', () => {
    // Transaction 1 wrote its event first (row 8) but set the key's row to version 2 after
    // transaction 2 (row 9) set version 1: it committed second (the early-id, late-commit case).
    const lateCommitter = [tx(1, 'ok', [['a1', 'a', 2, 8]]), tx(2, 'ok', [['a2', 'a', 1, 9]])];
    expect(checkPerKeyOrder(history(lateCommitter, arrived('a2', 'a1')))).toEqual([]);
    expect(checkPerKeyOrder(history(lateCommitter, arrived('a1', 'a2')))).toHaveLength(1);
  });

  it('leaves out events whose transaction never took its row lock (no version)', () => {
    const unversioned = [tx(1, 'ok', [['a1', 'a', 1, 1]]), tx(2, 'unknown', [['a2', 'a', 0, 2]])];
    (unversioned[1] as TransactionOp).events[0]!.version = undefined;
    expect(checkPerKeyOrder(history(unversioned, arrived('a2', 'a1')))).toEqual([]);
  });
});

describe('the anomaly report', () => {
  it('is empty for a correct history', () => {
    expect(anomalies(history(ops, arrived('a1', 'b1', 'a1', 'a2'), arrived('a1', 'b1', 'a2')), { ordered: true })).toEqual([]);
  });

  it('names each anomaly it finds', () => {
    const bad = history(ops, arrived('a2', 'a1', 'x1'), arrived('a1', 'a1', 'a2'));
    const found = anomalies(bad, { ordered: true });
    expect(found.map((line) => line.split(':')[0])).toEqual(['lost event', 'aborted read', 'out of order', 'duplicate effect', 'missing effect']);
    expect(found[0]).toContain('b1 (key b, tx #2 commit, version 1, row 2)');
  });

  it('checks the order of effects only when asked to', () => {
    const reordered = history(ops, arrived('a1', 'b1', 'a2'), arrived('a2', 'b1', 'a1'));
    expect(anomalies(reordered, { ordered: true })).toEqual([]);
    expect(anomalies(reordered, { ordered: true, orderedEffects: true })[0]).toMatch(/^out of order: key a: a2 .* was applied before a1/);
  });
});
