import type { Database, Executor } from './executor.ts';
import { resolveSchema } from './options.ts';
import { translatingErrors } from './driver-errors.ts';
import { topicPatterns } from './read.ts';
import { lastDrawnSql, quoteIdent } from './sql.ts';

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
  /**
   * Behind, no live worker, and no cursor movement for `abandonedAfterSeconds`: a relay that is
   * gone (or a disabled webhook endpoint) keeps retention from deleting every event after its
   * cursor. Drop it (`tidings relay drop NAME`) if it will not come back.
   */
  readonly abandoned: boolean;
}

/**
 * A transaction that holds a partition's commit lock: it is committing events into that
 * partition, or prepared (two-phase commit) after publishing into it, or made the commit trigger
 * fire early (SET CONSTRAINTS ... IMMEDIATE). Other publishers into the partition wait at COMMIT
 * until it ends, and feeds hold back events numbered after it.
 */
export interface CommitLockHolder {
  readonly partition: number;
  /** Its backend, or null for a prepared transaction (which no backend runs). */
  readonly pid: number | null;
  /** Its `application_name`, visible to every role (null for a prepared transaction). */
  readonly applicationName: string | null;
  /** A prepared transaction's gid, or null. */
  readonly preparedTransaction: string | null;
  /** Seconds since it was prepared (prepared transactions only; a backend's start time is hidden from other roles). */
  readonly preparedSeconds: number | null;
  /** Transactions waiting at COMMIT for this partition's lock. */
  readonly waiting: number;
  /** Seconds the longest of them has waited (0: none). */
  readonly waitedSeconds: number;
}

/**
 * What holds the feeds back. Relays read each partition by commit number and wait for nothing;
 * feeds read all partitions in one order and stop below a partition that is committing.
 */
export interface FeedHoldReport {
  /** Committed events the feeds cannot hand out yet (capped at `lagCountLimit`). */
  readonly events: number;
  /** Age in seconds of the oldest of them, by the time it was written (0: none). */
  readonly seconds: number;
  /** Held back for longer than `stalledAfterSeconds`. */
  readonly stalled: boolean;
  readonly holders: readonly CommitLockHolder[];
}

export interface OutboxStatus {
  /** What holds the feeds (SSE, polling) back, and who holds partition commit locks. */
  readonly feeds: FeedHoldReport;
  readonly relays: readonly RelayStatusReport[];
}

export interface StatusOptions {
  readonly schema?: string;
  /** A relay that is behind and has not moved for this long is stalled. Default 60. */
  readonly stalledAfterSeconds?: number;
  /** A relay behind with no live worker and no cursor movement for this long is abandoned. Default 86 400 (a day). */
  readonly abandonedAfterSeconds?: number;
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
 * whether it is stalled; and what holds the feeds back: transactions holding a partition's commit
 * lock (by pid and application name, or prepared transaction), and the committed events waiting
 * behind them, which count as stalled after `stalledAfterSeconds`.
 */
export async function status(db: Executor, options: StatusOptions = {}): Promise<OutboxStatus> {
  const schema = resolveSchema(options.schema);
  return translatingErrors(schema, () => readStatus(db, schema, options));
}

/**
 * Relay filters as the statements take them (`$n::json`, read with
 * `json_to_recordset(...) AS f(relay text, patterns text[], tenant text)`).
 */
export function relayFiltersJson(filters: StatusOptions['filters']): string {
  return JSON.stringify(
    Object.entries(filters ?? {}).map(([relay, filter]) => ({
      relay,
      patterns: topicPatterns(filter.topics ?? undefined) ?? null,
      tenant: filter.tenant ?? null,
    })),
  );
}

/** Whether an event's `topic` and `tenant` (SQL expressions) pass the filter row `f` (patterns, tenant; NULL = any). */
export function matchesFilter(f: string, topic: string, tenant: string): string {
  return `(${f}.patterns IS NULL OR ${topic} LIKE ANY(${f}.patterns)) AND (${f}.tenant IS NULL OR ${tenant} = ${f}.tenant)`;
}

async function readStatus(db: Executor, schema: string, options: StatusOptions): Promise<OutboxStatus> {
  const s = quoteIdent(schema);
  const stalledAfter = options.stalledAfterSeconds ?? 60;
  const abandonedAfter = options.abandonedAfterSeconds ?? 86_400;
  const limit = options.lagCountLimit ?? 1_000_000;
  const filters = relayFiltersJson(options.filters);
  const [feeds, partitions, workers, letters, parked] = await Promise.all([
    feedHold(db, schema, limit, stalledAfter),
    cursorLag(db, s, limit, filters),
    db.query<{ relay: string; worker: string; expires_at: Date }>(
      `SELECT relay, worker, expires_at FROM ${s}.relay_workers WHERE expires_at > now() ORDER BY relay, worker`,
    ),
    db.query<{ relay: string; n: number }>(`SELECT relay, count(*)::int AS n FROM ${s}.dead_letters GROUP BY relay`),
    db.query<{ relay: string; keys: number; events: number }>(
      `SELECT pk.relay, count(*)::int AS keys, coalesce(sum(w.n), 0)::int AS events
       FROM ${s}.parked_keys pk
       LEFT JOIN (SELECT relay, key, count(*) AS n FROM ${s}.parked_events GROUP BY relay, key) w ON w.relay = pk.relay AND w.key = pk.key
       GROUP BY pk.relay`,
    ),
  ]);
  const byRelay = new Map<string, CursorRow[]>();
  for (const row of partitions.rows) {
    const rows = byRelay.get(row.relay);
    if (rows) rows.push(row);
    else byRelay.set(row.relay, [row]);
  }
  const liveWorkers = groupBy(workers.rows, (row) => row.relay);
  const deadLetters = new Map(letters.rows.map((row) => [row.relay, row.n]));
  const parkedBy = new Map(parked.rows.map((row) => [row.relay, row]));
  const now = Date.now();
  return {
    feeds,
    relays: [...byRelay].map(([relay, rows]) => {
      const live = liveWorkers.get(relay) ?? [];
      const lagEvents = rows.reduce((sum, row) => sum + row.lag_events, 0);
      const lagSeconds = rows.reduce((max, row) => Math.max(max, row.lag_seconds), 0);
      const lastMove = rows.reduce((max, row) => Math.max(max, row.updated_at.getTime()), 0);
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
        deadLetters: deadLetters.get(relay) ?? 0,
        parkedKeys: parkedBy.get(relay)?.keys ?? 0,
        parkedEvents: parkedBy.get(relay)?.events ?? 0,
        unavailableSince: rows.reduce<Date | null>(
          (oldest, row) => (row.unavailable_since && row.lease_until && (!oldest || row.unavailable_since < oldest) ? row.unavailable_since : oldest),
          null,
        ),
        stalled: lagEvents > 0 && (live.length === 0 || (lagSeconds > stalledAfter && idleFor > stalledAfter)),
        abandoned: lagEvents > 0 && live.length === 0 && idleFor > abandonedAfter,
      };
    }),
  };
}

/**
 * Every cursor with its lag: `lagSql`, then `beyondSql` for the cursors behind a cut tail, if any.
 * On a handle that runs transactions, with JIT compilation off: the planner cannot know how short
 * the tails are, estimates the statement as costly, and would spend longer compiling it (seconds
 * with a thousand relays) than running it.
 */
async function cursorLag(db: Executor, s: string, limit: number, filters: string): Promise<{ rows: CursorRow[] }> {
  const read = async (trx: Executor) => {
    const { rows } = await trx.query<CursorRow & { beyond: boolean }>(lagSql(s), [limit, filters]);
    const beyond = rows.filter((row) => row.beyond);
    if (beyond.length > 0) {
      const { rows: counted } = await trx.query<{ relay: string; partition: number; lag_events: number; lag_seconds: number }>(beyondSql(s), [
        limit,
        filters,
        beyond.map((row) => row.relay),
        beyond.map((row) => row.partition),
      ]);
      const byCursor = new Map(counted.map((row) => [`${row.partition}:${row.relay}`, row]));
      for (const row of beyond) {
        const lag = byCursor.get(`${row.partition}:${row.relay}`);
        if (lag) Object.assign(row, { lag_events: lag.lag_events, lag_seconds: lag.lag_seconds });
      }
    }
    return { rows };
  };
  if (!isDatabase(db)) return read(db);
  return db.transaction(async (trx) => {
    await trx.query('SET LOCAL jit = off');
    return read(trx);
  });
}

function isDatabase(db: Executor): db is Database {
  return typeof (db as Partial<Database>).transaction === 'function';
}

interface CursorRow {
  relay: string;
  partition: number;
  cursor: string;
  owner: string | null;
  lease_until: Date | null;
  updated_at: Date;
  lag_events: number;
  lag_seconds: number;
  unavailable_since: Date | null;
  unavailable_error: string | null;
}

/**
 * The lag of cursors further behind than the tail `lagSql` read (more than `limit` events): a
 * scan from each such cursor, capped at `limit`, and the age of the first event after it. Only a
 * relay that far behind pays for it.
 */
function beyondSql(s: string): string {
  const after = (extra: string) =>
    `FROM ${s}.commits c
     JOIN ${s}.events e ON e.partition = c.partition AND e.tx_id = c.tx_id AND e.id BETWEEN c.first_id AND c.last_id
     WHERE c.partition = rp.partition AND c.seq >= rp.cursor_seq AND (c.seq, e.id) > (rp.cursor_seq, rp.cursor_id)
       AND ${matchesFilter('f', 'e.topic', 'e.tenant')} ${extra}`;
  return `SELECT rp.relay, rp.partition,
            (SELECT count(*) FROM (SELECT 1 ${after('')} LIMIT $1) x)::int AS lag_events,
            coalesce((SELECT extract(epoch FROM now() - e.created_at) ${after('ORDER BY c.seq, e.id LIMIT 1')}), 0)::float8 AS lag_seconds
     FROM ${s}.relay_partitions rp
     JOIN unnest($3::text[], $4::int[]) AS b(relay, partition) ON b.relay = rp.relay AND b.partition = rp.partition
     LEFT JOIN json_to_recordset($2::json) AS f(relay text, patterns text[], tenant text) ON f.relay = rp.relay`;
}

function groupBy<T>(rows: readonly T[], key: (row: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const row of rows) {
    const group = groups.get(key(row));
    if (group) group.push(row);
    else groups.set(key(row), [row]);
  }
  return groups;
}

/**
 * Every cursor's lag in one statement whose cost does not grow with the number of relays times
 * their lag. Each partition's tail (the events after its lowest cursor, newest first, at most
 * `$1`) is read once. Lag is then a running count down that tail: for cursors without a filter
 * over all of it, for filtered cursors over each (topic, tenant) of the tail they match, summed.
 * Cursor marks sort before the event at their own position, so the running count at a cursor is
 * the number of events after it, and the running minimum of `created_at` the oldest of them. A
 * cursor below a tail the limit cut short is marked `beyond`: `beyondSql` counts it. A count
 * from the tail never exceeds `$1`: the tail holds no more.
 */
function lagSql(s: string): string {
  return `WITH cur AS MATERIALIZED (
       SELECT rp.relay, rp.partition, rp.cursor_seq, rp.cursor_id, f.patterns, f.tenant,
              (f.patterns IS NOT NULL OR f.tenant IS NOT NULL) AS filtered
       FROM ${s}.relay_partitions rp
       LEFT JOIN json_to_recordset($2::json) AS f(relay text, patterns text[], tenant text) ON f.relay = rp.relay
     ),
     lowest AS (
       SELECT DISTINCT ON (partition) partition, cursor_seq, cursor_id FROM cur ORDER BY partition, cursor_seq, cursor_id
     ),
     tail AS MATERIALIZED (
       SELECT lowest.partition, t.* FROM lowest
       CROSS JOIN LATERAL (
         SELECT c.seq, e.id, e.topic, e.tenant, e.created_at FROM ${s}.commits c
         JOIN ${s}.events e ON e.partition = c.partition AND e.tx_id = c.tx_id AND e.id BETWEEN c.first_id AND c.last_id
         WHERE c.partition = lowest.partition AND c.seq >= lowest.cursor_seq AND (c.seq, e.id) > (lowest.cursor_seq, lowest.cursor_id)
         ORDER BY c.seq DESC, e.id DESC LIMIT $1) t
     ),
     edge AS (
       SELECT partition, count(*) AS n, (array_agg(seq ORDER BY seq, id))[1] AS seq, (array_agg(id ORDER BY seq, id))[1] AS id
       FROM tail GROUP BY partition
     ),
     kinds AS (SELECT DISTINCT partition, topic, tenant FROM tail),
     marks AS (
       SELECT t.partition, false AS by_kind, NULL::text AS topic, NULL::text AS tenant, t.seq, t.id, 1 AS ev, t.created_at, NULL::text AS relay
       FROM tail t WHERE EXISTS (SELECT 1 FROM cur WHERE cur.partition = t.partition AND NOT cur.filtered)
       UNION ALL
       SELECT t.partition, true, t.topic, t.tenant, t.seq, t.id, 1, t.created_at, NULL
       FROM tail t WHERE EXISTS (SELECT 1 FROM cur WHERE cur.partition = t.partition AND cur.filtered)
       UNION ALL
       SELECT cur.partition, false, NULL, NULL, cur.cursor_seq, cur.cursor_id, 0, NULL, cur.relay FROM cur WHERE NOT cur.filtered
       UNION ALL
       SELECT cur.partition, true, k.topic, k.tenant, cur.cursor_seq, cur.cursor_id, 0, NULL, cur.relay
       FROM cur JOIN kinds k ON k.partition = cur.partition AND ${matchesFilter('cur', 'k.topic', 'k.tenant')}
       WHERE cur.filtered
     ),
     running AS (
       SELECT relay, partition, ev,
              sum(ev) OVER w AS behind,
              min(created_at) OVER w AS oldest
       FROM marks
       WINDOW w AS (PARTITION BY partition, by_kind, topic, tenant ORDER BY seq DESC, id DESC, ev ASC ROWS UNBOUNDED PRECEDING)
     ),
     lag AS (
       SELECT relay, partition, sum(behind) AS behind, min(oldest) AS oldest FROM running WHERE ev = 0 GROUP BY relay, partition
     )
     SELECT rp.relay, rp.partition, 'c' || rp.cursor_seq || '-' || rp.cursor_id AS cursor, rp.owner, rp.unavailable_since, rp.unavailable_error,
            CASE WHEN rp.lease_until > now() THEN rp.lease_until END AS lease_until, rp.updated_at,
            coalesce(lag.behind, 0)::int AS lag_events,
            coalesce(extract(epoch FROM now() - lag.oldest), 0)::float8 AS lag_seconds,
            coalesce(edge.n >= $1 AND (rp.cursor_seq, rp.cursor_id) < (edge.seq, edge.id), false) AS beyond
     FROM ${s}.relay_partitions rp
     LEFT JOIN lag ON lag.relay = rp.relay AND lag.partition = rp.partition
     LEFT JOIN edge ON edge.partition = rp.partition
     ORDER BY rp.relay, rp.partition`;
}

/**
 * Holders of the partitions' commit locks, from pg_locks, pg_stat_activity's pid and
 * application_name and pg_prepared_xacts: what every role may read (a backend's xact_start and
 * backend_xid are hidden from other roles). Held-back events are those numbered above the feeds'
 * horizon, computed as readFeed computes it.
 */
async function feedHold(db: Executor, schema: string, limit: number, stalledAfter: number): Promise<FeedHoldReport> {
  const s = quoteIdent(schema);
  const { rows: locks } = await db.query<{
    partition: number;
    pid: number | null;
    application_name: string | null;
    gid: string | null;
    prepared_seconds: number | null;
    waiting: number;
    waited_seconds: number;
    drawn: string;
  }>(
    `WITH q AS (${lastDrawnSql(s)}),
     ours AS (
       SELECT l.objid::text::int AS partition, l.pid, l.virtualtransaction, l.granted, l.waitstart
       FROM pg_locks l, q
       WHERE q.drawn IS NOT NULL AND l.locktype = 'advisory' AND l.objsubid = 2
         AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
         AND l.classid = (hashtext('tidings.commits:' || $1)::bigint & 4294967295)::oid
     )
     SELECT h.partition, h.pid, a.application_name, p.gid,
            extract(epoch FROM now() - p.prepared)::float8 AS prepared_seconds,
            (SELECT count(*) FROM ours w WHERE w.partition = h.partition AND NOT w.granted)::int AS waiting,
            coalesce((SELECT extract(epoch FROM now() - min(w.waitstart)) FROM ours w WHERE w.partition = h.partition AND NOT w.granted), 0)::float8 AS waited_seconds,
            (SELECT drawn::text FROM q) AS drawn
     FROM ours h
     LEFT JOIN pg_stat_activity a ON a.pid = h.pid
     LEFT JOIN pg_locks x ON h.pid IS NULL AND x.locktype = 'transactionid' AND x.virtualtransaction = h.virtualtransaction
     LEFT JOIN pg_prepared_xacts p ON p.transaction = x.transactionid
     WHERE h.granted
     ORDER BY h.partition`,
    [schema],
  );
  const holders: CommitLockHolder[] = locks.map((row) => ({
    partition: row.partition,
    pid: row.pid,
    applicationName: row.pid === null ? null : (row.application_name ?? null),
    preparedTransaction: row.gid,
    preparedSeconds: row.gid === null ? null : row.prepared_seconds,
    waiting: row.waiting,
    waitedSeconds: row.waited_seconds,
  }));
  if (holders.length === 0) return { events: 0, seconds: 0, stalled: false, holders };
  // The feeds' horizon: the last number drawn before the locks were read, or below a held partition's last commit.
  const { rows } = await db.query<{ events: number; seconds: number }>(
    `WITH h AS (
       SELECT least($1::bigint, (SELECT min(coalesce((SELECT max(c.seq) FROM ${s}.commits c WHERE c.partition = p), 0)) FROM unnest($2::int[]) AS p)) AS safe
     )
     SELECT (SELECT count(*) FROM (SELECT 1 FROM ${s}.commits c
               JOIN ${s}.events e ON e.partition = c.partition AND e.tx_id = c.tx_id AND e.id BETWEEN c.first_id AND c.last_id
               WHERE c.seq > h.safe LIMIT $3) x)::int AS events,
            coalesce((SELECT extract(epoch FROM now() - min(e.created_at)) FROM ${s}.commits c
               JOIN ${s}.events e ON e.partition = c.partition AND e.tx_id = c.tx_id AND e.id BETWEEN c.first_id AND c.last_id
               WHERE c.seq > h.safe), 0)::float8 AS seconds
     FROM h`,
    [locks[0]!.drawn, holders.map((h) => h.partition), limit],
  );
  const { events, seconds } = rows[0]!;
  return { events, seconds, stalled: events > 0 && seconds > stalledAfter, holders };
}
