/**
 * How the checkers count the effects of a consumer that promises once per record rather than once
 * per event (Kafka checkpoint mode, where each record's offset is stored with its effects).
 */
import type { Effect } from './history.ts';

/**
 * Checkpoint mode applies each *record* once; a relay that resent a batch wrote some events twice,
 * as two records, and each may be applied. So the checkers see, per event, the applications of its
 * most-applied record: one when every record was applied once, two when one record was applied
 * twice (a duplicate effect), none when none was.
 */
export function oncePerRecord(effects: readonly Effect[]): Effect[] {
  const counts = new Map<string, Map<string, number>>();
  const kept: Effect[] = [];
  for (const effect of effects) {
    const records = counts.get(effect.eventId) ?? new Map<string, number>();
    counts.set(effect.eventId, records);
    const most = Math.max(0, ...records.values());
    const count = (records.get(effect.record ?? '') ?? 0) + 1;
    records.set(effect.record ?? '', count);
    if (count > most) kept.push(effect);
  }
  return kept;
}
