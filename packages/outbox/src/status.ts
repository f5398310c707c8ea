import type { Executor } from './executor.ts';
import { resolveSchema } from './options.ts';
import { translatingErrors } from './driver-errors.ts';
import { topicPatterns } from './read.ts';
import { quoteIdent } from './sql.ts';

export interface PartitionStatus {
  readonly partition: number;
  /** The relay's cursor, as `encodePosition` writes it. */
  readonly cursor: string;
  readonly owner: string | null;
  readonly leaseUntil: Date | null;
  /** Events in the partition after the cursor that the relay delivers (its `filters` entry; capped at `lagCountLimit`). */
  readonly lagEvents: number;
  /** Age of the oldest event after the cursor, in seconds; 0 when caught up. */
  readonly lagSeconds: number;
  /** When the cursor last moved. */
  readonly movedAt: Date;
  /** Since when the partition's worker waits for an unavailable destination, and why; null when it is not waiting. */
  readonly unavailable: { readonly since: Date; readonly error: string } | null;
}

export interface RelayStatusReport {
  readonly relay: string;
  readonly workers: readonly { readonly worker: string; readonly expiresAt: Date }[];
  readonly partitions: readonly PartitionStatus[];
  readonly lagEvents: number;
  readonly lagSeconds: number;
  readonly deadLetters: number;
  /** Keys whose events wait behind a dead letter (onFailure `park`), and how many events wait. */
  readonly parkedKeys: number;
  readonly parkedEvents: number;
  /** When the oldest running outage of the destination began, as its partitions' workers saw it; null when none is waiting. */
  readonly unavailableSince: Date | null;
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
  /**
   * The topic and tenant filter of each relay, by name, so its lag counts only the events it
   * delivers. A relay without an entry counts every event. (Filters live in each relay's options,
   * not in the database: pass the ones you know, e.g. the webhook endpoints' topics and tenants.)
   */
  readonly filters?: Readonly<Record<string, { readonly topics?: readonly string[] | null; readonly tenant?: string | null }>>;
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
  const filters = JSON.stringify(
    Object.entries(options.filters ?? {}).map(([relay, filter]) => ({
      relay,
      patterns: topicPatterns(filter.topics ?? undefined) ?? null,
      tenant: filter.tenant ?? null,
    })),
  );
  const matches = `AND (f.patterns IS NULL OR e.topic LIKE ANY(f.patterns)) AND (f.tenant IS NULL OR e.tenant = f.tenant)`;
  const [watermark, partitions, workers, letters, parked] = await Promise.all([
    db.query<{ seconds: number }>(
      // Every transaction that has written holds the watermark at or below its id: the oldest one
      // holds it back the longest.
      `SELECT coalesce(extract(epoch FROM now() - min(xact_start)), 0)::float8 AS seconds
       FROM pg_stat_activity WHERE backend_xid IS NOT NULL`,
    ),
    db.query<{ relay: string; partition: number; cursor: string; owner: string | null; lease_until: Date | null; updated_at: Date; lag_events: number; lag_seconds: number; unavailable_since: Date | null; unavailable_error: string | null }>(
      `SELECT rp.relay, rp.partition, rp.cursor_tx::text || '-' || rp.cursor_id AS cursor, rp.owner, rp.unavailable_since, rp.unavailable_error,
              CASE WHEN rp.lease_until > now() THEN rp.lease_until END AS lease_until, rp.updated_at,
              (SELECT count(*) FROM (SELECT 1 FROM ${s}.events e WHERE e.partition = rp.partition
                 AND (e.tx_id, e.id) > (rp.cursor_tx, rp.cursor_id) ${matches} LIMIT $1) behind)::int AS lag_events,
              coalesce((SELECT extract(epoch FROM now() - e.created_at) FROM ${s}.events e
                 WHERE e.partition = rp.partition AND (e.tx_id, e.id) > (rp.cursor_tx, rp.cursor_id)
                   AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot()) ${matches}
                 ORDER BY e.tx_id, e.id LIMIT 1), 0)::float8 AS lag_seconds
       FROM ${s}.relay_partitions rp
       LEFT JOIN json_to_recordset($2::json) AS f(relay text, patterns text[], tenant text) ON f.relay = rp.relay
       ORDER BY rp.relay, rp.partition`,
      [limit, filters],
    ),
    db.query<{ relay: string; worker: string; expires_at: Date }>(
      `SELECT relay, worker, expires_at FROM ${s}.relay_workers WHERE expires_at > now() ORDER BY relay, worker`,
    ),
    db.query<{ relay: string; n: number }>(`SELECT relay, count(*)::int AS n FROM ${s}.dead_letters GROUP BY relay`),
    db.query<{ relay: string; keys: number; events: number }>(
      `SELECT pk.relay, count(*)::int AS keys,
              coalesce(sum((SELECT count(*) FROM ${s}.parked_events pe WHERE pe.relay = pk.relay AND pe.key = pk.key)), 0)::int AS events
       FROM ${s}.parked_keys pk GROUP BY pk.relay`,
    ),
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
          unavailable: row.unavailable_since && row.lease_until ? { since: row.unavailable_since, error: row.unavailable_error ?? '' } : null,
        })),
        lagEvents,
        lagSeconds,
        deadLetters: letters.rows.find((row) => row.relay === relay)?.n ?? 0,
        parkedKeys: parked.rows.find((row) => row.relay === relay)?.keys ?? 0,
        parkedEvents: parked.rows.find((row) => row.relay === relay)?.events ?? 0,
        unavailableSince: rows.reduce<Date | null>(
          (oldest, row) => (row.unavailable_since && row.lease_until && (!oldest || row.unavailable_since < oldest) ? row.unavailable_since : oldest),
          null,
        ),
        stalled: lagEvents > 0 && (live.length === 0 || (lagSeconds > stalledAfter && idleFor > stalledAfter)),
      };
    }),
  };
}
