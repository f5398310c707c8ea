import { eventColumns } from '../../src/event.ts';
import type * as real from '../../src/read-statement.ts';

/**
 * Mutant `id-cursor`: `id > cursor` with nothing to tell a gap from a late commit. `head` is
 * always NULL: a short page tells nothing about the rows it did not return.
 */
export const partitionReadStatement: typeof real.partitionReadStatement = (s, filters) =>
  `SELECT NULL::text AS head, x.*
    FROM (SELECT 1) one LEFT JOIN LATERAL (
      SELECT ${eventColumns.replace('c.seq::text AS seq', "'0' AS seq")}
      FROM ${s}.events e
      WHERE e.partition = $1 AND e.id > $3::bigint AND $2::bigint IS NOT NULL ${filters}
      ORDER BY e.id
      LIMIT $4
    ) x ON true`;

export { pastHead } from '../../src/read-statement.ts';
