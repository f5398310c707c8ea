/**
 * Deliberately broken variants of tidings that the property suite must catch ("test the tests").
 * `TIDINGS_MUTANT=<name>[,<name>]` turns them on, and only inside a vitest run (vitest sets VITEST
 * in the process and in the worker processes the tests spawn): no deployment can enable one.
 *
 * - `id-cursor`: the relay reads `id > cursor` with no visibility watermark (the sequence-gap bug);
 * - `ack-before-send`: the relay moves its cursor before the transport acknowledged the batch;
 * - `no-dedup`: the inbox checks for a duplicate with a look-up instead of the unique key;
 * - `notify-only`: the relay wakes only on NOTIFY and never polls;
 * - `xid-order`: relays and feeds read the log in (tx_id, id) order under the visibility watermark,
 *   the order in which transactions got their id (first write), not the order they committed.
 */
export type MutantName = 'id-cursor' | 'ack-before-send' | 'no-dedup' | 'notify-only' | 'xid-order';

const enabled: ReadonlySet<string> = process.env.VITEST
  ? new Set((process.env.TIDINGS_MUTANT ?? '').split(',').map((name) => name.trim()).filter(Boolean))
  : new Set();

/** @internal True when the named mutant is on for this test run. */
export function isMutant(name: MutantName): boolean {
  return enabled.has(name);
}
