/**
 * The statement that writes the dedup mark `($1 consumer, $2 event id)` into schema `s`'s inbox
 * (quoted) and returns a row when the mark is new. A second transaction inserting the same key
 * waits on the unique index until the first one ends: if it committed, nothing is inserted
 * (duplicate); if it rolled back, the row goes in.
 *
 * Imported as `#mark-statement` (see package.json `imports`), the module a test mutant replaces.
 */
export function markStatement(s: string): string {
  return `INSERT INTO ${s}.inbox (consumer, event_id) VALUES ($1, $2)
       ON CONFLICT (consumer, event_id) DO NOTHING
       RETURNING true AS received`;
}
