/**
 * Deliberately broken variants of tidings that the property suite must catch ("test the tests").
 * `TIDINGS_MUTANT=<name>[,<name>]` turns them on, and only inside a vitest run (vitest sets VITEST
 * in the process and in the worker processes the tests spawn): no deployment can enable one.
 *
 * - `id-cursor`: the relay reads `id > cursor` with no visibility watermark (the sequence-gap bug);
 * - `ack-before-send`: the relay moves its cursor before the transport acknowledged the batch;
 * - `no-dedup`: the inbox checks for a duplicate with a look-up instead of the unique key;
 * - `notify-only`: the relay wakes only on NOTIFY and never polls;
 * - `commit-tag-ignored`: a COMMIT that PostgreSQL answered with ROLLBACK (a handler swallowed a
 *   SQL error) counts as committed, and an aborted transaction is not noticed after a handler;
 * - `outage-dead-letters`: the relay counts an unavailable destination against the event it was
 *   sending, so a long outage makes dead letters and lets later events overtake them;
 * - `no-parking`: a dead letter parks nothing, so its key's later events overtake it;
 * - `xid-order`: relays and feeds read the log in (tx_id, id) order under the visibility watermark,
 *   the order in which transactions got their id (first write), not the order they committed.
 */
export type MutantName = 'id-cursor' | 'ack-before-send' | 'no-dedup' | 'notify-only' | 'commit-tag-ignored' | 'outage-dead-letters' | 'no-parking' | 'xid-order';

const enabled: ReadonlySet<string> = process.env.VITEST
  ? new Set((process.env.TIDINGS_MUTANT ?? '').split(',').map((name) => name.trim()).filter(Boolean))
  : new Set();

/** @internal True when the named mutant is on for this test run. */
export function isMutant(name: MutantName): boolean {
  return enabled.has(name);
}
