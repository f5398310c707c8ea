import { commitOrderFrom, eventColumns, type Position } from './event.ts';

/**
 * The statement `readPartition` runs, for schema `s` (quoted) and the topic and tenant `filters`:
 * `$1` partition, `$2`/`$3` the cursor's seq and id, `$4` the page size. Its rows are the page in
 * commit order, by the commit sequence number each transaction got at COMMIT under its
 * partition's lock, then by row id; every row also carries `head`, the partition's last visible
 * commit number (NULL before its first commit).
 *
 * Imported as `#read-statement` (see package.json `imports`), the module a test mutant replaces.
 */
export function partitionReadStatement(s: string, filters: string): string {
  const from = commitOrderFrom(s, {
    commitWhere: 'c.partition = $1 AND c.seq >= $2::bigint',
    afterSeq: '$2::bigint',
    afterId: '$3::bigint',
    eventWhere: filters,
    limit: '$4',
  });
  return `SELECT h.head::text AS head, x.*
    FROM (SELECT max(seq) AS head FROM ${s}.commits WHERE partition = $1) h
    LEFT JOIN LATERAL (
      SELECT ${eventColumns}
      FROM ${from}
      ORDER BY c.seq, e.id
      LIMIT $4
    ) x ON true`;
}

/**
 * Where a read that found fewer events than it asked for has looked: past commit `head`, the last
 * visible one, up to which every number of the partition is final (see `readPartition`).
 */
export function pastHead(head: string): Position {
  return { seq: (BigInt(head) + 1n).toString(), id: '0' };
}
