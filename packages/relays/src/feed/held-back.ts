/**
 * Whether committed events wait above the visibility watermark because an older transaction is
 * still open. Their own NOTIFY has been sent already, and the older transaction may end without
 * one (a rollback, or a write that publishes nothing), so the hub must look again by itself.
 * Rows of transactions still open are invisible here, so only committed, held-back rows count;
 * rows at the watermark itself are the oldest running transaction's own, so the scan starts above it.
 */
const statements = new Map<string, string>();

export function heldBackStatement(schema: string): string {
  let text = statements.get(schema);
  if (text === undefined) {
    text = `SELECT EXISTS (SELECT 1 FROM "${schema.replaceAll('"', '""')}".events e
      WHERE e.tx_id > pg_snapshot_xmin(pg_current_snapshot())) AS held`;
    statements.set(schema, text);
  }
  return text;
}
