/**
 * The judge of swallowed SQL errors (see swallow.ts): a handler run that swallowed one had its
 * transaction rolled back, so it must not count as applied. The event was read from the log, so it
 * committed: it must be delivered again and applied by a later run. A swallowed event with no
 * effect at the end is an anomaly, named for what went wrong:
 *
 * - `acknowledged after an aborted transaction`: the handler never ran for the event again after
 *   the run that swallowed: the consumer took the rolled-back COMMIT for a success and acknowledged
 *   (acked, committed the offset or cursor, answered 2xx) an event it never applied;
 * - `missing after a swallowed error`: the handler ran again, yet the event was never applied.
 *
 * Duplicates and order are the other checkers' business.
 */
import { transactions, type History, type SwallowedRun } from './history.ts';

export interface SwallowVerdict {
  /** The last swallowing run of each never-applied event that was not run again afterwards. */
  readonly acknowledgedAborted: readonly SwallowedRun[];
  /** The last swallowing run of each never-applied event that was run again, without effect. */
  readonly missingAfterSwallow: readonly SwallowedRun[];
}

export function checkSwallowed(history: History): SwallowVerdict {
  const applied = new Set(history.effects.map((e) => e.eventId));
  const last = new Map<string, SwallowedRun>();
  for (const s of history.swallowed ?? []) if (!applied.has(s.eventId) && s.run >= (last.get(s.eventId)?.run ?? 0)) last.set(s.eventId, s);
  const acknowledgedAborted: SwallowedRun[] = [];
  const missingAfterSwallow: SwallowedRun[] = [];
  for (const s of last.values()) ((s.runs ?? s.run) > s.run ? missingAfterSwallow : acknowledgedAborted).push(s);
  return { acknowledgedAborted, missingAfterSwallow };
}

/** The swallowing anomalies of the history, one message each, naming the anomaly first. */
export function swallowAnomalies(history: History): string[] {
  const byId = new Map(transactions(history.ops).flatMap((op) => op.events.map((e) => [e.eventId, { op, e }] as const)));
  const describe = (s: SwallowedRun): string => {
    const found = byId.get(s.eventId);
    const where = found ? ` (key ${found.e.key}, tx #${found.op.tx} ${found.op.action})` : '';
    return `${s.eventId}${where}: ${s.statement} ${s.place} on run ${s.run}, ${s.runs ?? s.run} run(s) in all`;
  };
  const list = (runs: readonly SwallowedRun[]): string => runs.slice(0, 5).map(describe).join('; ') + (runs.length > 5 ? `; and ${runs.length - 5} more` : '');
  const verdict = checkSwallowed(history);
  const found: string[] = [];
  if (verdict.acknowledgedAborted.length > 0) {
    found.push(
      `acknowledged after an aborted transaction: ${verdict.acknowledgedAborted.length} event(s) whose handler swallowed a SQL error ` +
        `were never run again nor applied: PostgreSQL rolled their transaction back and the consumer took it for a commit: ${list(verdict.acknowledgedAborted)}`,
    );
  }
  if (verdict.missingAfterSwallow.length > 0) {
    found.push(
      `missing after a swallowed error: ${verdict.missingAfterSwallow.length} event(s) whose handler swallowed a SQL error ` +
        `were run again but never applied: ${list(verdict.missingAfterSwallow)}`,
    );
  }
  return found;
}
