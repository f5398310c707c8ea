import { translatingErrors } from './driver-errors.ts';
import { ClusterChangedError, ConfigError, CursorAheadError, type ClusterIdentity } from './errors.ts';
import type { Database, Executor } from './executor.ts';
import { notifyChannel, resolveSchema } from './options.ts';
import { lastDrawnSql, quoteIdent } from './sql.ts';

/** What `inspectCluster` finds: the recorded and the current identity, and how cursors fit the log. */
export interface ClusterReport {
  readonly recorded: ClusterIdentity;
  readonly current: ClusterIdentity;
  /** The identity changed since it was recorded (restore, copy to another cluster). */
  readonly changed: boolean;
  /** The last commit number drawn. */
  readonly lastDrawn: string;
  /** The highest commit number in the log (0 when empty). */
  readonly highestCommit: string;
  /** `relay/partition` of every cursor beyond the last number drawn, and `commit counter` when it is behind the log. */
  readonly ahead: readonly string[];
}

/**
 * Reads the recorded and the current identity of the outbox's cluster and checks that every relay
 * cursor and the commit counter fit the log.
 */
export async function inspectCluster(db: Executor, options: { schema?: string } = {}): Promise<ClusterReport> {
  const schema = resolveSchema(options.schema);
  const s = quoteIdent(schema);
  return translatingErrors(schema, async () => {
    // LIMIT 1 on the one settings row: the table is never analysed, and taken for a thousand rows
    // the planner would count the cursor scan once per row, costing the statement past
    // jit_above_cost (a JIT compilation at every relay start).
    const { rows } = await db.query<{
      recorded_oid: string | null;
      recorded_system: string | null;
      current_oid: string;
      last_drawn: string;
      highest: string;
      ahead: string[];
    }>(
      `SELECT st.events_oid::text AS recorded_oid, st.system_identifier AS recorded_system,
              '${s}.events'::regclass::oid::text AS current_oid,
              q.drawn::text AS last_drawn,
              coalesce((SELECT max(c.seq) FROM ${s}.commits c), 0)::text AS highest,
              ARRAY(SELECT rp.relay || '/' || rp.partition FROM ${s}.relay_partitions rp
                    WHERE rp.cursor_seq > q.drawn + 1 ORDER BY rp.relay, rp.partition) AS ahead
       FROM (SELECT events_oid, system_identifier FROM ${s}.settings LIMIT 1) st,
            (${lastDrawnSql(s)}) q`,
    );
    const row = rows[0]!;
    const current: ClusterIdentity = { eventsOid: row.current_oid, systemIdentifier: await systemIdentifier(db) };
    const recorded: ClusterIdentity = { eventsOid: row.recorded_oid, systemIdentifier: row.recorded_system };
    const changed =
      (recorded.eventsOid !== null && recorded.eventsOid !== current.eventsOid) ||
      (recorded.systemIdentifier !== null && current.systemIdentifier !== null && recorded.systemIdentifier !== current.systemIdentifier);
    const behind = BigInt(row.highest) > BigInt(row.last_drawn);
    return { recorded, current, changed, lastDrawn: row.last_drawn, highestCommit: row.highest, ahead: [...row.ahead, ...(behind ? ['commit counter'] : [])] };
  });
}

/** Throws `ClusterChangedError` or `CursorAheadError` when relays must not run on this log as it is. */
export async function assertClusterFits(db: Executor, schema: string): Promise<void> {
  const report = await inspectCluster(db, { schema });
  if (report.changed) throw new ClusterChangedError(schema, report.recorded, report.current);
  if (report.ahead.length > 0) throw new CursorAheadError(schema, report.ahead, report.lastDrawn);
}

/**
 * @internal One cluster check for many relays started together (a webhook dispatcher's endpoints):
 * the first call runs `assertClusterFits`, every later one shares its outcome, refusal included.
 * Each relay checking on its own would scan every relay's cursors once per relay started: N
 * endpoints, N² cursor rows read. Make a new one for each batch of starts, so a relay never starts
 * on a check older than the batch it belongs to.
 */
export function sharedClusterCheck(db: Executor, schema: string): () => Promise<void> {
  let check: Promise<void> | undefined;
  return () => (check ??= assertClusterFits(db, schema));
}

/**
 * Accepts the cluster the outbox now lives in: records its identity and moves the commit counter
 * past every number already in the log. Run it after checking (and, where needed, moving) the
 * relay cursors; a cursor still beyond the log keeps the relays refusing.
 *
 * @example
 * await moveCursors(db, { relay: 'orders', to: new Date('2026-11-26T10:00:00Z') });
 * await adoptCluster(db);
 */
export async function adoptCluster(db: Database, options: { schema?: string } = {}): Promise<ClusterReport> {
  const schema = resolveSchema(options.schema);
  const s = quoteIdent(schema);
  const system = await systemIdentifier(db);
  await translatingErrors(schema, () =>
    db.transaction(async (trx) => {
      await trx.query(`UPDATE ${s}.settings SET events_oid = '${s}.events'::regclass::oid, system_identifier = $1`, [system]);
      await trx.query(
        `SELECT setval('${s}.commit_seq', m.highest)
         FROM (SELECT max(c.seq) AS highest FROM ${s}.commits c) m
         WHERE m.highest > (SELECT q.drawn FROM (${lastDrawnSql(s)}) q)`,
      );
    }),
  );
  return inspectCluster(db, { schema });
}

export interface MoveCursorsOptions {
  readonly schema?: string;
  readonly relay: string;
  /**
   * A time: each partition resumes at its first event (in commit order) written at or after it,
   * or at the end of the log when it has none. `{ afterEvent }`: every partition resumes after that
   * event's commit number, as if everything up to it had been delivered.
   */
  readonly to: Date | { readonly afterEvent: string };
}

/**
 * Sets a relay's cursors, forwards or backwards, for example onto a log restored on another
 * cluster. Leases are revoked in the same statement, so a running worker cannot write an old
 * cursor over the new one. Returns the number of partitions moved.
 */
export async function moveCursors(db: Executor, options: MoveCursorsOptions): Promise<number> {
  const schema = resolveSchema(options.schema);
  const s = quoteIdent(schema);
  const params: unknown[] = [options.relay];
  let target: string;
  if (options.to instanceof Date) {
    if (Number.isNaN(options.to.getTime())) throw new ConfigError('to', 'is an invalid Date');
    params.push(options.to);
    target = `SELECT rp.partition,
        coalesce(first.seq, (SELECT max(c.seq) + 1 FROM ${s}.commits c WHERE c.partition = rp.partition), 0) AS cursor_seq,
        coalesce(first.id - 1, 0) AS cursor_id
      FROM ${s}.relay_partitions rp
      LEFT JOIN LATERAL (
        SELECT c.seq, e.id FROM ${s}.commits c
        JOIN ${s}.events e ON e.partition = c.partition AND e.tx_id = c.tx_id AND e.id BETWEEN c.first_id AND c.last_id
        WHERE c.partition = rp.partition AND e.created_at >= $2
        ORDER BY c.seq, e.id LIMIT 1
      ) first ON true
      WHERE rp.relay = $1`;
  } else {
    params.push(options.to.afterEvent);
    target = `SELECT rp.partition, c.seq + 1 AS cursor_seq, 0::bigint AS cursor_id
      FROM ${s}.relay_partitions rp, ${s}.events e
      JOIN ${s}.commits c ON c.partition = e.partition AND c.tx_id = e.tx_id AND e.id BETWEEN c.first_id AND c.last_id
      WHERE rp.relay = $1 AND e.event_id = $2`;
  }
  params.push(notifyChannel(schema));
  return translatingErrors(schema, async () => {
    const { rows } = await db.query<{ moved: number; targets: number }>(
      `WITH target AS (${target}),
       moved AS (
         UPDATE ${s}.relay_partitions rp
         SET cursor_seq = t.cursor_seq, cursor_id = t.cursor_id, owner = NULL, lease_until = NULL, fence = rp.fence + 1, updated_at = now()
         FROM target t
         WHERE rp.relay = $1 AND rp.partition = t.partition
         RETURNING 1
       )
       SELECT (SELECT count(*) FROM moved)::int AS moved, (SELECT count(*) FROM target)::int AS targets, pg_notify($${params.length}, '*') IS NULL AS _`,
      params,
    );
    const { moved, targets } = rows[0]!;
    if (targets === 0 && !(options.to instanceof Date)) {
      throw new ConfigError('to', `no event ${options.to.afterEvent} in the log of schema "${schema}" for relay "${options.relay}"`);
    }
    return moved;
  });
}

/** pg_control_system().system_identifier, or null when this role may not read it. */
async function systemIdentifier(db: Executor): Promise<string | null> {
  try {
    const { rows } = await db.query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()');
    return rows[0]?.id ?? null;
  } catch {
    return null;
  }
}
