import { ConfigError } from './errors.ts';
import type { Database, Executor } from './executor.ts';
import { applyMigrations, type MigrationResult } from './migrate.ts';
import { defaults, notifyChannel, wholeOption, resolveSchema } from './options.ts';
import { decodePosition } from './position.ts';
import { commitOrderFrom, type Position } from './event.ts';
import { refuseBeyondHorizon, resolveHorizon, type HorizonOptions } from './horizon.ts';
import { translatingErrors } from './driver-errors.ts';
import { quoteIdent } from './sql.ts';

export interface MigrateOptions {
  /** Default `tidings`. */
  readonly schema?: string;
  /**
   * Partitions of the log, fixed when the schema is first created (default 16). Per-key order and
   * the most workers that can share a relay depend on it.
   */
  readonly partitions?: number;
}

/**
 * Creates or upgrades the outbox schema. Safe to run at every start-up, from many processes at once.
 *
 * @example
 * await migrate(pgDatabase(process.env.DATABASE_URL!));
 */
export async function migrate(db: Database, options: MigrateOptions = {}): Promise<MigrationResult> {
  const schema = resolveSchema(options.schema);
  const partitions = wholeOption('partitions', options.partitions, defaults.partitions, 1, 1024);
  if (options.partitions !== undefined) await refuseRepartition(db, schema, partitions);
  return applyMigrations(db, schema, {
    component: 'outbox',
    folder: new URL('../migrations/', import.meta.url),
    values: { partitions },
  });
}

/**
 * An existing outbox keeps the partition count it was created with: events are spread over the
 * partitions by key, and per-key order holds within a partition, so changing the count under
 * running relays would reorder keys. Asking for another count is refused before anything is written.
 */
async function refuseRepartition(db: Executor, schema: string, partitions: number): Promise<void> {
  const table = `${quoteIdent(schema)}.settings`;
  const found = await db.query<{ exists: boolean }>('SELECT to_regclass($1) IS NOT NULL AS exists', [table]);
  if (!found.rows[0]!.exists) return;
  const { rows } = await db.query<{ partitions: number }>(`SELECT partitions FROM ${table}`);
  const existing = rows[0]?.partitions;
  if (existing !== undefined && existing !== partitions) {
    throw new ConfigError(
      'partitions',
      `the outbox in schema "${schema}" has ${existing} partitions, fixed when it was created; changing the count on a live outbox ` +
        `is not supported (it would reorder keys). Leave partitions out (or pass ${existing}), or create a new outbox in another schema.`,
    );
  }
}

export interface ReplayOptions extends HorizonOptions {
  readonly schema?: string;
  readonly relay: string;
  /** Re-deliver events written at or after this time, or after this cursor (as `encodePosition` gives). */
  readonly from: Date | string;
}

/**
 * Moves a relay's cursors back so that it delivers again from a point in the past. Each partition's
 * lease is revoked in the same statement, so a running worker cannot write its old cursor over
 * the new one; the workers take the partitions again within a heartbeat.
 *
 * A replay delivers again what consumers have applied, and relies on their inboxes to skip it:
 * one that reaches events written before the redelivery horizon (7 days by default) is refused
 * with `BeyondHorizonError`, before any cursor moves, unless `beyondHorizon: true`.
 */
export async function replay(db: Executor, options: ReplayOptions): Promise<number> {
  const schema = resolveSchema(options.schema);
  const horizon = resolveHorizon(options);
  if (options.from instanceof Date && Number.isNaN(options.from.getTime())) throw new ConfigError('from', 'is an invalid Date');
  return translatingErrors(schema, async () => {
    await refuseBeyondHorizon(db, `replaying relay "${options.relay}"`, horizon, firstReplayed(schema, options));
    return moveCursorsBack(db, schema, options);
  });
}

/** The creation time of the first event, per partition in commit order, that the replay delivers again. */
function firstReplayed(schema: string, options: ReplayOptions): { text: string; params: unknown[] } {
  const s = quoteIdent(schema);
  const after =
    options.from instanceof Date
      ? { where: 'e.created_at >= $2', params: [options.from] }
      : (() => {
          const position = decodePosition(options.from as string);
          return { where: '(c.seq, e.id) > ($2::bigint, $3::bigint)', params: [position.seq, position.id] };
        })();
  return {
    text: `SELECT min(first.created_at) AS oldest
      FROM ${s}.relay_partitions rp
      CROSS JOIN LATERAL (
        SELECT e.created_at FROM ${s}.commits c
        JOIN ${s}.events e ON e.partition = c.partition AND e.tx_id = c.tx_id AND e.id BETWEEN c.first_id AND c.last_id
        WHERE c.partition = rp.partition AND ${after.where} AND (c.seq, e.id) <= (rp.cursor_seq, rp.cursor_id)
        ORDER BY c.seq, e.id LIMIT 1
      ) first
      WHERE rp.relay = $1`,
    params: [options.relay, ...after.params],
  };
}

async function moveCursorsBack(db: Executor, schema: string, options: ReplayOptions): Promise<number> {
  const s = quoteIdent(schema);
  const params: unknown[] = [options.relay];
  let target: string;
  if (options.from instanceof Date) {
    if (Number.isNaN(options.from.getTime())) throw new ConfigError('from', 'is an invalid Date');
    params.push(options.from);
    // Per partition, just before its first event (in commit order) written at or after the time.
    target = `SELECT rp.partition, first.seq AS cursor_seq, first.id - 1 AS cursor_id
      FROM ${s}.relay_partitions rp
      CROSS JOIN LATERAL (
        SELECT c.seq, e.id FROM ${s}.commits c
        JOIN ${s}.events e ON e.partition = c.partition AND e.tx_id = c.tx_id AND e.id BETWEEN c.first_id AND c.last_id
        WHERE c.partition = rp.partition AND e.created_at >= $2
        ORDER BY c.seq, e.id LIMIT 1
      ) first
      WHERE rp.relay = $1`;
  } else {
    const position: Position = decodePosition(options.from);
    params.push(position.seq, position.id);
    target = `SELECT rp.partition, $2::bigint AS cursor_seq, $3::bigint AS cursor_id FROM ${s}.relay_partitions rp WHERE rp.relay = $1`;
  }
  params.push(notifyChannel(schema));
  const { rows } = await db.query<{ moved: number }>(
    `WITH target AS (${target}),
     moved AS (
       UPDATE ${s}.relay_partitions rp
       SET cursor_seq = t.cursor_seq, cursor_id = t.cursor_id, owner = NULL, lease_until = NULL, fence = rp.fence + 1, updated_at = now()
       FROM target t
       WHERE rp.relay = $1 AND rp.partition = t.partition AND (rp.cursor_seq, rp.cursor_id) > (t.cursor_seq, t.cursor_id)
       RETURNING 1
     )
     SELECT count(*)::int AS moved, pg_notify($${params.length}, '*') IS NULL AS _ FROM moved`,
    params,
  );
  return rows[0]?.moved ?? 0;
}

/**
 * Forgets a relay: its cursors, workers, dead letters and parked keys. A relay that no longer runs still holds
 * retention back until it is dropped.
 */
export async function dropRelay(db: Database, options: { schema?: string; relay: string }): Promise<void> {
  const s = quoteIdent(resolveSchema(options.schema));
  await db.transaction(async (trx) => {
    for (const table of ['relay_partitions', 'relay_workers', 'dead_letters', 'parked_keys', 'parked_events']) {
      await trx.query(`DELETE FROM ${s}.${table} WHERE relay = $1`, [options.relay]);
    }
  });
}

export interface CleanupOptions {
  readonly schema?: string;
  /** Keep events younger than this. Default 7 days. */
  readonly retentionMs?: number;
  /**
   * Also delete dead letters (status `dead`, not being retried) that died longer ago than this,
   * oldest first. Default: keep dead letters until they are retried or discarded. A dead letter
   * that holds its key parked (`onFailure: 'park'`) is never deleted by age: that stays an
   * operator's decision (`retryDeadLetters` or `discardDeadLetters`).
   */
  readonly deadLetterRetentionMs?: number;
  /** Rows deleted per statement, so that no statement holds locks for long. Default 1 000. */
  readonly batchSize?: number;
  /** Called after each batch with the events deleted so far by this call. */
  readonly onProgress?: (deleted: number) => void;
  /** Stops between batches when aborted; what was deleted stays deleted and is counted. */
  readonly signal?: AbortSignal;
}

/** What one `cleanup()` call deleted. */
export interface CleanupResult {
  readonly events: number;
  readonly deadLetters: number;
}

/**
 * Deletes events older than the retention period that every relay has passed, in small batches,
 * walking each partition's log in commit order from where the last cleanup stopped: the deleted
 * part of a partition is always a prefix, so `retention_horizon` says exactly what is gone and a
 * feed reader behind it gets `CursorExpiredError`. A partition stops at its first event that is too
 * young or that some relay has not passed, so the cost per deleted row stays flat however large
 * the table, however many relays, and a partition held back by one relay costs one look per call.
 * Concurrent cleanups skip a partition another one is working on. With `deadLetterRetentionMs`,
 * old dead letters go too.
 *
 * @example
 * const { events, deadLetters } = await cleanup(db, { retentionMs: 3 * 86_400_000, deadLetterRetentionMs: 30 * 86_400_000 });
 */
export async function cleanup(db: Executor, options: CleanupOptions = {}): Promise<CleanupResult> {
  const schema = resolveSchema(options.schema);
  const settings = cleanupSettings(options);
  return translatingErrors(schema, async () => {
    const events = await deleteExpired(db, schema, settings, options);
    const deadLetters = settings.deadLetterRetentionMs === null ? 0 : await deleteOldDeadLetters(db, schema, settings.deadLetterRetentionMs, settings.batchSize, options.signal);
    return { events, deadLetters };
  });
}

interface CleanupSettings {
  readonly retentionMs: number;
  readonly deadLetterRetentionMs: number | null;
  readonly batchSize: number;
}

/** Checks every cleanup option before anything is deleted. */
export function cleanupSettings(options: CleanupOptions): CleanupSettings {
  return {
    retentionMs: wholeOption('retentionMs', options.retentionMs, 7 * 24 * 3600 * 1000),
    deadLetterRetentionMs: options.deadLetterRetentionMs === undefined ? null : wholeOption('deadLetterRetentionMs', options.deadLetterRetentionMs, 0),
    batchSize: wholeOption('batchSize', options.batchSize, 1000, 1, 100_000),
  };
}

async function deleteExpired(db: Executor, schema: string, settings: CleanupSettings, options: CleanupOptions): Promise<number> {
  const s = quoteIdent(schema);
  const { retentionMs, batchSize } = settings;
  const { rows: partitions } = await db.query<{ partitions: number }>(`SELECT partitions FROM ${s}.settings`);
  const statement = cleanupStatement(s);
  let total = 0;
  for (let partition = 0; partition < partitions[0]!.partitions; partition++) {
    for (;;) {
      if (options.signal?.aborted) return total;
      const { rows } = await db.query<{ deleted: number }>(statement, [partition, retentionMs, batchSize, schema]);
      const deleted = rows[0]?.deleted ?? 0;
      total += deleted;
      if (deleted > 0) options.onProgress?.(total);
      if (deleted < batchSize) break;
    }
  }
  return total;
}

/**
 * Dead letters that died more than `retentionMs` ago, oldest first, in batches; rows a retry or
 * another cleanup holds are skipped, and so is every dead letter that keeps its key parked.
 */
async function deleteOldDeadLetters(db: Executor, schema: string, retentionMs: number, batchSize: number, signal: AbortSignal | undefined): Promise<number> {
  const s = quoteIdent(schema);
  const statement = `WITH old AS (
       SELECT d.id FROM ${s}.dead_letters d
       WHERE d.status = 'dead' AND d.dead_at < now() - $1 * interval '1 millisecond'
         AND NOT EXISTS (SELECT 1 FROM ${s}.parked_keys pk WHERE pk.relay = d.relay AND pk.event_id = d.event_id)
       ORDER BY d.dead_at, d.id
       LIMIT $2
       FOR UPDATE SKIP LOCKED
     )
     DELETE FROM ${s}.dead_letters d USING old WHERE d.id = old.id AND d.status = 'dead'`;
  let total = 0;
  for (;;) {
    if (signal?.aborted) return total;
    const { rowCount: deleted } = await db.query(statement, [retentionMs, batchSize]);
    total += deleted;
    if (deleted < batchSize) return total;
  }
}

const cleanupStatements = new Map<string, string>();

/**
 * One batch of one partition ($1), in one statement: the next `$3` events after the partition's
 * retention horizon in commit order, of which the prefix before the first one that must stay (as
 * young as `$2` ms, or not passed by every relay's cursor in the partition) is deleted with the
 * commit rows it empties, and the horizon moves to its end. A transaction-level advisory lock per
 * schema and partition keeps two cleanups off the same prefix. The lowest cursor is looked up once
 * per statement (MATERIALIZED): inlined, it was looked up again for every event, over every relay.
 */
function cleanupStatement(s: string): string {
  let text = cleanupStatements.get(s);
  if (text) return text;
  text = `WITH gate AS (
       SELECT pg_try_advisory_xact_lock(hashtext('tidings.cleanup.' || $4::text), $1::int) AS mine
     ),
     horizon AS (
       SELECT coalesce((SELECT rh.seq FROM ${s}.retention_horizon rh WHERE rh.partition = $1), 0) AS seq,
              coalesce((SELECT rh.id FROM ${s}.retention_horizon rh WHERE rh.partition = $1), 0) AS id
     ),
     lowest AS MATERIALIZED (
       SELECT rp.cursor_seq AS seq, rp.cursor_id AS id FROM ${s}.relay_partitions rp
       WHERE rp.partition = $1 ORDER BY rp.cursor_seq, rp.cursor_id LIMIT 1
     ),
     next AS (
       SELECT e.id, c.seq,
              e.created_at < now() - $2 * interval '1 millisecond'
                AND NOT EXISTS (SELECT 1 FROM lowest l WHERE (l.seq, l.id) < (c.seq, e.id)) AS expired
       FROM gate, horizon h, ${commitOrderFrom(s, {
         commitWhere: 'c.partition = $1 AND c.seq >= h.seq',
         afterSeq: 'h.seq',
         afterId: 'h.id',
         eventWhere: '',
         limit: '$3',
       })}
       WHERE gate.mine
       ORDER BY c.seq, e.id
       LIMIT $3
     ),
     prefix AS (
       SELECT n.id, n.seq FROM (SELECT n.*, bool_and(n.expired) OVER (ORDER BY n.seq, n.id) AS all_before FROM next n) n
       WHERE n.all_before
     ),
     gone AS (DELETE FROM ${s}.events e USING prefix p WHERE e.id = p.id RETURNING p.seq, e.id),
     last AS (SELECT seq, id FROM gone ORDER BY seq DESC, id DESC LIMIT 1),
     moved AS (
       INSERT INTO ${s}.retention_horizon (partition, seq, id)
       SELECT $1, seq, id FROM last
       ON CONFLICT (partition) DO UPDATE SET seq = EXCLUDED.seq, id = EXCLUDED.id
     ),
     emptied AS (
       DELETE FROM ${s}.commits c USING last
       WHERE c.partition = $1 AND (c.seq < last.seq OR (c.seq = last.seq AND c.last_id <= last.id))
     )
     SELECT count(*)::int AS deleted FROM gone`;
  cleanupStatements.set(s, text);
  return text;
}
