import { describe, expect, it } from 'vitest';
import type { Effect, History, HistoryOp, SwallowedRun } from './history.ts';
import { checkSwallowed, swallowAnomalies } from './swallow-checker.ts';

const ops: HistoryOp[] = [
  {
    type: 'transaction',
    tx: 1,
    action: 'commit',
    silent: false,
    events: [
      { eventId: 'a1', key: 'a', version: 1, id: '1' },
      { eventId: 'b1', key: 'b', version: 1, id: '2' },
    ],
    outcome: 'ok',
    invokedAt: 0,
    completedAt: 1,
  },
];

const swallowed = (eventId: string, run: number, runs: number): SwallowedRun => ({ eventId, run, runs, statement: 'division-by-zero', place: 'after-effect' });
const effects = (...ids: string[]): Effect[] => ids.map((eventId) => ({ eventId, key: eventId[0]! }));

function history(swallowedRuns: SwallowedRun[], applied: Effect[]): History {
  return { destination: 'the destination', ops, arrivals: [], effects: applied, swallowed: swallowedRuns };
}

describe('the swallowed-error checker', () => {
  it('passes an event whose swallowing run was followed by a run that applied it', () => {
    expect(swallowAnomalies(history([swallowed('a1', 1, 2)], effects('a1', 'b1')))).toEqual([]);
  });

  it('names an event never run again after its handler swallowed an error as acknowledged after an aborted transaction', () => {
    const found = swallowAnomalies(history([swallowed('a1', 1, 1)], effects('b1')));
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^acknowledged after an aborted transaction: 1 event\(s\)/);
    expect(found[0]).toContain('a1 (key a, tx #1 commit): division-by-zero after-effect on run 1, 1 run(s) in all');
  });

  it('tells an event run again but never applied apart, judging by its last swallowing run', () => {
    const verdict = checkSwallowed(history([swallowed('a1', 1, 3), swallowed('a1', 2, 3), swallowed('b1', 2, 2)], []));
    expect(verdict.missingAfterSwallow.map((s) => [s.eventId, s.run])).toEqual([['a1', 2]]);
    expect(verdict.acknowledgedAborted.map((s) => [s.eventId, s.run])).toEqual([['b1', 2]]);
    expect(swallowAnomalies(history([swallowed('a1', 1, 3)], [])).map((line) => line.split(':')[0])).toEqual(['missing after a swallowed error']);
  });

  it('finds nothing in a history without swallowed runs', () => {
    expect(swallowAnomalies({ destination: 'd', ops, arrivals: [], effects: [] })).toEqual([]);
  });
});
