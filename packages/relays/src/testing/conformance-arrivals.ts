import type { ReceivedMessage, Subscription } from './harness.ts';

/** How what arrived differs from what was sent. */
export interface ArrivalReport {
  /** Sent, never arrived: lost events. */
  readonly missing: readonly string[];
  /** Arrived, never sent: another test's or topic's events, or corrupted ids. */
  readonly unexpected: readonly string[];
  /** Sent ids that arrived more than once, with how many times they arrived. */
  readonly duplicated: ReadonlyMap<string, number>;
  readonly sent: number;
  readonly received: number;
}

/** Options of {@link assertAllArrived}. */
export interface ArrivalOptions {
  /** At-least-once after a fault: an id that arrived several times is fine. Default false. */
  readonly allowDuplicates?: boolean;
  /** Names what was checked (a topic, a subscriber) at the start of the failure message. */
  readonly label?: string;
}

/**
 * Compares the ids that were sent with the messages that arrived, without judging.
 *
 * @example
 * const { missing, duplicated } = compareArrivals(sentIds, subscription.received);
 */
export function compareArrivals(
  sentIds: Iterable<string>,
  received: readonly Pick<ReceivedMessage, 'eventId'>[],
): ArrivalReport {
  const expected = new Set(sentIds);
  const counts = new Map<string, number>();
  for (const message of received) counts.set(message.eventId, (counts.get(message.eventId) ?? 0) + 1);
  const missing: string[] = [];
  for (const id of expected) if (!counts.has(id)) missing.push(id);
  const unexpected: string[] = [];
  const duplicated = new Map<string, number>();
  for (const [id, count] of counts) {
    if (!expected.has(id)) unexpected.push(id);
    else if (count > 1) duplicated.set(id, count);
  }
  return { missing, unexpected, duplicated, sent: expected.size, received: received.length };
}

/** Thrown by {@link assertAllArrived}; carries the full report. */
export class ArrivalAssertionError extends Error {
  override readonly name = 'ArrivalAssertionError';
  readonly report: ArrivalReport;
  constructor(report: ArrivalReport, message: string) {
    super(message);
    this.report = report;
  }
}

/**
 * Checks that every sent id arrived and nothing else did, and says which ids are missing,
 * unexpected or duplicated, separately, when they did not. Duplicates fail unless allowed.
 *
 * @example
 * await subscription.waitFor(sent.length);
 * assertAllArrived(sent.map((e) => e.eventId), subscription.received);
 * // after a fault, at-least-once:
 * assertAllArrived(ids, subscription.received, { allowDuplicates: true });
 */
export function assertAllArrived(
  sentIds: Iterable<string>,
  received: readonly Pick<ReceivedMessage, 'eventId'>[],
  options: ArrivalOptions = {},
): ArrivalReport {
  const report = compareArrivals(sentIds, received);
  const duplicatesFail = !options.allowDuplicates && report.duplicated.size > 0;
  if (report.missing.length === 0 && report.unexpected.length === 0 && !duplicatesFail) return report;
  const description = describeReport(report, duplicatesFail);
  throw new ArrivalAssertionError(report, options.label ? `${options.label}: ${description}` : description);
}

/**
 * A multi-line account of an arrival report, missing, unexpected and duplicated ids apart; long
 * lists are cut after ten ids.
 *
 * @example
 * console.log(describeReport(compareArrivals(sentIds, received)));
 * // 1000 events expected, 998 messages received:
 * //   missing (2): 01J5…, 01J5…
 * //   unexpected (0): -
 * //   duplicated (0): -
 */
export function describeReport(report: ArrivalReport, includeDuplicates = true): string {
  const lines = [`${report.sent} events expected, ${report.received} messages received:`];
  lines.push(`  missing (${report.missing.length}): ${listIds(report.missing)}`);
  lines.push(`  unexpected (${report.unexpected.length}): ${listIds(report.unexpected)}`);
  if (includeDuplicates) {
    const dups = [...report.duplicated].map(([id, count]) => `${id} ×${count}`);
    lines.push(`  duplicated (${dups.length}): ${listIds(dups)}`);
  }
  return lines.join('\n');
}

/**
 * Waits until every id in `ids` has arrived on `subscription` (or the time is up) and returns what
 * arrived by then; it never throws, so the caller can judge with {@link assertAllArrived}.
 * Unlike `waitFor(count)`, duplicates cannot make it stop early.
 *
 * @example
 * const received = await waitForIds(subscription, ids, 10_000);
 * assertAllArrived(ids, received);
 */
export async function waitForIds(
  subscription: Subscription,
  ids: Iterable<string>,
  timeoutMs: number,
): Promise<readonly ReceivedMessage[]> {
  const wanted = new Set(ids);
  const deadline = Date.now() + timeoutMs;
  let received = subscription.received;
  let checked = 0;
  for (;;) {
    for (; checked < received.length; checked++) wanted.delete(received[checked]!.eventId);
    const left = deadline - Date.now();
    if (wanted.size === 0 || left <= 0) return received;
    try {
      received = await subscription.waitFor(received.length + 1, left);
    } catch {
      return subscription.received;
    }
  }
}

function listIds(ids: readonly string[], max = 10): string {
  if (ids.length === 0) return '-';
  const shown = ids.slice(0, max).join(', ');
  return ids.length > max ? `${shown}, … and ${ids.length - max} more` : shown;
}
