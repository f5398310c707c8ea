import type { Executor } from './executor.ts';
import { resolveSchema } from './options.ts';
import { translatingErrors } from './driver-errors.ts';
import { quoteIdent } from './sql.ts';

export interface PartitionStatus {
  readonly partition: number;
  /** The relay's cursor, as `encodePosition` writes it. */
  readonly cursor: string;
  readonly owner: string | null;
  readonly leaseUntil: Date | null;
  /** Events in the partition after the cursor (every topic; capped at `lagCountLimit`). */
  readonly lagEvents: number;
  /** Age of the oldest event after the cursor, in seconds; 0 when caught up. */
  readonly lagSeconds: number;
  /** When the cursor last moved. */
  readonly movedAt: Date;
}

export interface RelayStatusReport {
  readonly relay: string;
  readonly workers: readonly { readonly worker: string; readonly expiresAt: Date }[];
  readonly partitions: readonly PartitionStatus[];
  readonly lagEvents: number;
  readonly lagSeconds: number;
  readonly deadLetters: number;
  /** Behind, and either no live worker or no cursor movement for `stalledAfterSeconds`. */
  readonly stalled: boolean;
}

export interface OutboxStatus {
  /** Age in seconds of the oldest transaction that holds the visibility watermark back (0: none). */
  readonly watermarkLagSeconds: number;
  readonly relays: readonly RelayStatusReport[];
}

export interface StatusOptions {
  readonly schema?: string;
  /** A relay that is behind and has not moved for this long is stalled. Default 60. */
  readonly stalledAfterSeconds?: number;
  /** Counting stops here, so status stays cheap on a huge backlog. Default 1 000 000. */
  readonly lagCountLimit?: number;
}

/**
 * Where every relay stands: per partition its cursor, lease owner and lag, plus dead letters and
 * whether it is stalled; and how far one long transaction holds the watermark back.
 */
export async function status(db: Executor, options: StatusOptions = {}): Promise<OutboxStatus> {
  const schema = resolveSchema(options.schema);
  return translatingErrors(schema, () => readStatus(db, schema, options));
}

async function readStatus(db: Executor, schema: string, options: StatusOptions): Promise<OutboxStatus> {
  const s = quoteIdent(schema);
  const stalledAfter = options.stalledAfterSeconds ?? 60;
  const limit = options.lagCountLimit ?? 1_000_000;
  const [watermark, partitions, workers, letters] = await Promise.all([
    db.query<{ seconds: number }>(
      // Every transaction that has written holds the watermark at or below its id: the oldest one
      // holds it back the longest.
      `SELECT coalesce(extract(epoch FROM now() - min(xact_start)), 0)::float8 AS seconds
       FROM pg_stat_activity WHERE backend_xid IS NOT NULL`,
    ),
    db.query<{ relay: string; partition: number; cursor: string; owner: string | null; lease_until: Date | null; updated_at: Date; lag_events: number; lag_seconds: number }>(
      `SELECT rp.relay, rp.partition, 'c' || rp.cursor_seq || '-' || rp.cursor_id AS cursor, rp.owner,
              CASE WHEN rp.lease_until > now() THEN rp.lease_until END AS lease_until, rp.updated_at,
              (SELECT count(*) FROM (SELECT 1 FROM ${s}.commits c
                 JOIN ${s}.events e ON e.partition = c.partition AND e.tx_id = c.tx_id AND e.id BETWEEN c.first_id AND c.last_id
                 WHERE c.partition = rp.partition AND c.seq >= rp.cursor_seq AND (c.seq, e.id) > (rp.cursor_seq, rp.cursor_id)
                 LIMIT $1) behind)::int AS lag_events,
              coalesce((SELECT extract(epoch FROM now() - e.created_at) FROM ${s}.commits c
                 JOIN ${s}.events e ON e.partition = c.partition AND e.tx_id = c.tx_id AND e.id BETWEEN c.first_id AND c.last_id
                 WHERE c.partition = rp.partition AND c.seq >= rp.cursor_seq AND (c.seq, e.id) > (rp.cursor_seq, rp.cursor_id)
                 ORDER BY c.seq, e.id LIMIT 1), 0)::float8 AS lag_seconds
       FROM ${s}.relay_partitions rp ORDER BY rp.relay, rp.partition`,
      [limit],
    ),
    db.query<{ relay: string; worker: string; expires_at: Date }>(
      `SELECT relay, worker, expires_at FROM ${s}.relay_workers WHERE expires_at > now() ORDER BY relay, worker`,
    ),
    db.query<{ relay: string; n: number }>(`SELECT relay, count(*)::int AS n FROM ${s}.dead_letters GROUP BY relay`),
  ]);
  const names = [...new Set(partitions.rows.map((row) => row.relay))];
  const now = Date.now();
  return {
    watermarkLagSeconds: watermark.rows[0]?.seconds ?? 0,
    relays: names.map((relay) => {
      const rows = partitions.rows.filter((row) => row.relay === relay);
      const live = workers.rows.filter((row) => row.relay === relay);
      const lagEvents = rows.reduce((sum, row) => sum + row.lag_events, 0);
      const lagSeconds = Math.max(0, ...rows.map((row) => row.lag_seconds));
      const lastMove = Math.max(...rows.map((row) => row.updated_at.getTime()));
      const idleFor = (now - lastMove) / 1000;
      return {
        relay,
        workers: live.map((row) => ({ worker: row.worker, expiresAt: row.expires_at })),
        partitions: rows.map((row) => ({
          partition: row.partition,
          cursor: row.cursor,
          owner: row.lease_until ? row.owner : null,
          leaseUntil: row.lease_until,
          lagEvents: row.lag_events,
          lagSeconds: row.lag_seconds,
          movedAt: row.updated_at,
        })),
        lagEvents,
        lagSeconds,
        deadLetters: letters.rows.find((row) => row.relay === relay)?.n ?? 0,
        stalled: lagEvents > 0 && (live.length === 0 || (lagSeconds > stalledAfter && idleFor > stalledAfter)),
      };
    }),
  };
}
