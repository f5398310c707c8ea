import { eventColumns } from '../../src/event.ts';
import type * as real from '../../src/read-statement.ts';

/**
 * Mutant `xid-order`: the log as it was read before commit sequencing, in (tx_id, id) order below
 * the visibility watermark: first-write order, not commit order.
 *
 * A position holds (tx_id, id) in its id, as `tx_id << 32 | id` with seq 0 (room enough for a
 * test database's transaction and row ids): relay cursors then stay in order along this read and
 * never stand beyond the last commit number, which a relay starting on the log refuses. `head` is
 * the watermark, every transaction below which has ended.
 */
export const partitionReadStatement: typeof real.partitionReadStatement = (s, filters) =>
  `SELECT ((pg_snapshot_xmin(pg_current_snapshot())::text::bigint) << 32)::text AS head, x.*
    FROM (SELECT 1) one LEFT JOIN LATERAL (
      SELECT ${eventColumns.replace('e.id::text AS id, c.seq::text AS seq', "((e.tx_id::text::bigint << 32) + e.id)::text AS id, '0' AS seq")}
      FROM ${s}.events e
      WHERE e.partition = $1 AND $2::bigint IS NOT NULL
        AND (e.tx_id, e.id) > (($3::bigint >> 32)::text::xid8, $3::bigint & 4294967295)
        AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot()) ${filters}
      ORDER BY e.tx_id, e.id
      LIMIT $4
    ) x ON true`;

export const pastHead: typeof real.pastHead = (head) => ({ seq: '0', id: head });
