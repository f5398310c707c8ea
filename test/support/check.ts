export { waitUntil } from '@tidings/relays/testing';
import type { OutboxEvent } from '@tidings/outbox';

export interface DeliveryReport {
  /** Committed events that never arrived. */
  readonly lost: string[];
  /** Arrivals that were never committed (rolled back, or never published). */
  readonly unexpected: string[];
  /** Events that arrived more than once, with their counts. */
  readonly duplicated: Record<string, number>;
  /** Keys whose first arrivals are not in commit order. */
  readonly outOfOrder: string[];
}

/**
 * Judges a delivery: at-least-once (nothing lost, nothing unexpected, duplicates counted) and, per
 * key, first arrivals in the order of `committed` (which must be in commit order).
 */
export function judge(committed: readonly OutboxEvent[], arrivals: readonly { event_id: string; key: string | null }[]): DeliveryReport {
  const expected = new Map(committed.map((e) => [e.eventId, e]));
  const counts = new Map<string, number>();
  const unexpected: string[] = [];
  const firstArrivalsByKey = new Map<string, string[]>();
  for (const arrival of arrivals) {
    const n = (counts.get(arrival.event_id) ?? 0) + 1;
    counts.set(arrival.event_id, n);
    if (!expected.has(arrival.event_id)) unexpected.push(arrival.event_id);
    else if (n === 1 && arrival.key !== null) {
      firstArrivalsByKey.set(arrival.key, [...(firstArrivalsByKey.get(arrival.key) ?? []), arrival.event_id]);
    }
  }
  const lost = committed.filter((e) => !counts.has(e.eventId)).map((e) => e.eventId);
  const duplicated = Object.fromEntries([...counts].filter(([, n]) => n > 1));
  const outOfOrder: string[] = [];
  for (const [key, arrived] of firstArrivalsByKey) {
    const order = committed.filter((e) => e.key === key && counts.has(e.eventId)).map((e) => e.eventId);
    if (order.join() !== arrived.join()) outOfOrder.push(key);
  }
  return { lost, unexpected, duplicated, outOfOrder };
}
