/**
 * Pure judges of a {@link History} (testing.md §2). Each returns the anomalies it found; `anomalies`
 * turns them into messages that name the anomaly (`lost event`, `duplicate effect`, ...).
 *
 * - at-least-once: every committed event reached the destination (lost = failure, duplicates are
 *   counted and allowed); no event of a rolled-back transaction ever appears (aborted read); an
 *   event of a transaction with an unknown outcome may appear any number of times;
 * - exactly-once effects: every committed event's effect was applied exactly once through the inbox,
 *   an unknown one at most once, a rolled-back one never;
 * - order: per key, first arrivals follow log order — the `(tx_id, id)` order of the events, which is
 *   the order in which their transactions first wrote (commit order, for transactions that conflict).
 */
import { transactions, type Arrival, type History, type Outcome, type PublishedEvent } from './history.ts';

interface Known {
  readonly event: PublishedEvent;
  readonly tx: number;
  readonly action: string;
  readonly outcome: Outcome;
}

/** Every published event by id, with the outcome of its transaction (still open counts as unknown). */
function published(history: History): Map<string, Known> {
  const byId = new Map<string, Known>();
  for (const op of transactions(history.ops)) {
    for (const event of op.events) byId.set(event.eventId, { event, tx: op.tx, action: op.action, outcome: op.outcome ?? 'unknown' });
  }
  return byId;
}

function countIds(items: readonly { eventId: string }[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(item.eventId, (counts.get(item.eventId) ?? 0) + 1);
  return counts;
}

export interface DeliveryVerdict {
  /** Committed events that never arrived. */
  readonly lost: readonly string[];
  /** Events of rolled-back transactions that arrived. */
  readonly abortedReads: readonly string[];
  /** Arrivals of ids that no transaction of the history published. */
  readonly unexpected: readonly string[];
  /** Events that arrived more than once (allowed), with their counts. */
  readonly duplicated: Readonly<Record<string, number>>;
}

/** At-least-once delivery of the history's committed events to the destination. */
export function checkAtLeastOnce(history: History): DeliveryVerdict {
  const known = published(history);
  const counts = countIds(history.arrivals);
  const lost = [...known.values()].filter((k) => k.outcome === 'ok' && !counts.has(k.event.eventId)).map((k) => k.event.eventId);
  const abortedReads = [...counts.keys()].filter((id) => known.get(id)?.outcome === 'fail');
  const unexpected = [...counts.keys()].filter((id) => !known.has(id));
  const duplicated = Object.fromEntries([...counts].filter(([, n]) => n > 1));
  return { lost, abortedReads, unexpected, duplicated };
}

export interface EffectsVerdict {
  /** Committed events whose effect was never applied. */
  readonly missing: readonly string[];
  /** Events whose effect was applied more than once, with the number of applications. */
  readonly duplicateEffects: Readonly<Record<string, number>>;
  /** Effects of events of rolled-back transactions. */
  readonly abortedEffects: readonly string[];
  /** Effects of ids that no transaction of the history published. */
  readonly unexpected: readonly string[];
}

/** Exactly-once effects through the inbox. */
export function checkExactlyOnce(history: History): EffectsVerdict {
  const known = published(history);
  const counts = countIds(history.effects);
  const missing = [...known.values()].filter((k) => k.outcome === 'ok' && !counts.has(k.event.eventId)).map((k) => k.event.eventId);
  const duplicateEffects = Object.fromEntries([...counts].filter(([, n]) => n > 1));
  const abortedEffects = [...counts.keys()].filter((id) => known.get(id)?.outcome === 'fail');
  const unexpected = [...counts.keys()].filter((id) => !known.has(id));
  return { missing, duplicateEffects, abortedEffects, unexpected };
}

export interface OrderViolation {
  readonly key: string;
  /** The key's events in commit order, restricted to those that arrived. */
  readonly expected: readonly string[];
  /** Their first arrivals, in arrival order. */
  readonly actual: readonly string[];
  /** The first event that arrived before an event that committed earlier, and that earlier event. */
  readonly overtaking: string;
  readonly overtaken: string;
}

/**
 * Compares two events of one key in commit order: the version their transactions gave the key's
 * row under its lock, then (one transaction) the row id.
 */
export function compareCommitOrder(a: PublishedEvent, b: PublishedEvent): number {
  const version = (a.version ?? 0) - (b.version ?? 0);
  if (version !== 0) return version < 0 ? -1 : 1;
  const id = BigInt(a.id) - BigInt(b.id);
  return id === 0n ? 0 : id < 0n ? -1 : 1;
}

/**
 * Per key, the first arrival of each event must follow commit order (the versions of the key's
 * business row), not the log's own order. Rolled-back and unknown-id arrivals are left to the
 * at-least-once checker; events that never arrived are left out here.
 */
export function checkPerKeyOrder(history: History, of: readonly Arrival[] = history.arrivals): OrderViolation[] {
  const known = published(history);
  const seen = new Set<string>();
  const firstByKey = new Map<string, Known[]>();
  for (const arrival of of) {
    const k = known.get(arrival.eventId);
    if (!k || k.outcome === 'fail' || seen.has(arrival.eventId) || k.event.key === null || k.event.version === undefined) continue;
    seen.add(arrival.eventId);
    firstByKey.set(k.event.key, [...(firstByKey.get(k.event.key) ?? []), k]);
  }
  const violations: OrderViolation[] = [];
  for (const [key, arrived] of firstByKey) {
    const sorted = [...arrived].sort((a, b) => compareCommitOrder(a.event, b.event));
    const i = arrived.findIndex((k, n) => k !== sorted[n]);
    if (i < 0) continue;
    violations.push({
      key,
      expected: sorted.map((k) => k.event.eventId),
      actual: arrived.map((k) => k.event.eventId),
      overtaking: arrived[i]!.event.eventId,
      overtaken: sorted[i]!.event.eventId,
    });
  }
  return violations;
}

export interface JudgeOptions {
  /** The destination declares per-key order: check it on arrivals. */
  readonly ordered: boolean;
  /** The consumer applies events in arrival order per key (feeds): check order on effects too. */
  readonly orderedEffects?: boolean;
  /** The run had an inbox consumer writing effects. Default true. */
  readonly effects?: boolean;
}

/** Every anomaly of the history, one message each, naming the anomaly first; empty when it passes. */
export function anomalies(history: History, options: JudgeOptions): string[] {
  const known = published(history);
  const where = history.destination;
  const describe = (id: string): string => {
    const k = known.get(id);
    return k ? `${id} (key ${k.event.key}, tx #${k.tx} ${k.action}, version ${k.event.version ?? '-'}, row ${k.event.id})` : id;
  };
  const list = (ids: readonly string[]): string =>
    ids.slice(0, 5).map(describe).join(', ') + (ids.length > 5 ? `, and ${ids.length - 5} more` : '');
  const counted = (counts: Readonly<Record<string, number>>): string =>
    Object.entries(counts).slice(0, 5).map(([id, n]) => `${describe(id)} ×${n}`).join(', ');
  const found: string[] = [];

  const delivery = checkAtLeastOnce(history);
  if (delivery.lost.length > 0) found.push(`lost event: ${delivery.lost.length} committed event(s) never reached ${where}: ${list(delivery.lost)}`);
  if (delivery.abortedReads.length > 0) {
    found.push(`aborted read: ${delivery.abortedReads.length} event(s) of rolled-back transactions reached ${where}: ${list(delivery.abortedReads)}`);
  }
  if (delivery.unexpected.length > 0) found.push(`unexpected event: ${where} received ids that were never published: ${list(delivery.unexpected)}`);
  const order = (violations: OrderViolation[], what: string): void => {
    for (const v of violations.slice(0, 3)) {
      found.push(
        `out of order: key ${v.key}: ${describe(v.overtaking)} ${what} before ${describe(v.overtaken)}, which committed earlier; ` +
          `commit order ${v.expected.join(' ')}, ${what} ${v.actual.join(' ')}`,
      );
    }
  };
  if (options.ordered) order(checkPerKeyOrder(history), `arrived at ${where}`);

  if (options.effects ?? true) {
    const effects = checkExactlyOnce(history);
    const duplicates = Object.keys(effects.duplicateEffects).length;
    if (duplicates > 0) found.push(`duplicate effect: ${duplicates} event(s) were applied more than once through the inbox: ${counted(effects.duplicateEffects)}`);
    if (effects.missing.length > 0) {
      found.push(`missing effect: ${effects.missing.length} committed event(s) were never applied by the consumer: ${list(effects.missing)}`);
    }
    if (effects.abortedEffects.length > 0) {
      found.push(`aborted effect: ${effects.abortedEffects.length} event(s) of rolled-back transactions were applied: ${list(effects.abortedEffects)}`);
    }
    if (effects.unexpected.length > 0) found.push(`unexpected effect: ids that were never published were applied: ${list(effects.unexpected)}`);
    if (options.orderedEffects) order(checkPerKeyOrder(history, history.effects), 'was applied');
  }
  return found;
}

/** Counts for a run's summary line. */
export function summary(history: History): string {
  const ops = transactions(history.ops);
  const by = (o: Outcome): number => ops.filter((op) => op.outcome === o).length;
  const delivery = checkAtLeastOnce(history);
  const faults = history.ops.length - ops.length;
  return (
    `${ops.length} transactions (${by('ok')} ok, ${by('fail')} fail, ${by('unknown')} unknown), ${faults} faults, ` +
    `${history.arrivals.length} arrivals (${Object.keys(delivery.duplicated).length} events duplicated), ${history.effects.length} effects`
  );
}
