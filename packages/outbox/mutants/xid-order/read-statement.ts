import { eventColumns, type Position } from '../../src/event.ts';
import type * as real from '../../src/read-statement.ts';

/**
 * Mutant `xid-order`: the log as it was read before commit sequencing, in (tx_id, id) order below
 * the visibility watermark: first-write order, not commit order. `head` is the watermark.
 */
export const partitionReadStatement: typeof real.partitionReadStatement = (s, filters) =>
  `SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS head, x.*
    FROM (SELECT 1) one LEFT JOIN LATERAL (
      SELECT ${eventColumns.replace('c.seq::text AS seq', 'e.tx_id::text AS seq')}
      FROM ${s}.events e
      WHERE e.partition = $1 AND (e.tx_id, e.id) > ($2::text::xid8, $3::bigint) AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot()) ${filters}
      ORDER BY e.tx_id, e.id
      LIMIT $4
    ) x ON true`;

/** Every transaction below the watermark has ended, so the read has looked up to it. */
export const pastHead: typeof real.pastHead = (head): Position => ({ seq: head, id: '0' });
