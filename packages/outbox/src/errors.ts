/**
 * The named errors of tidings. Each carries the data needed to act on it, and its message says
 * what went wrong and what to do.
 */
export class TidingsError extends Error {
  override readonly name: string = 'TidingsError';
}

export type InvalidEventReason =
  | 'invalid-topic'
  | 'invalid-key'
  | 'invalid-tenant'
  | 'invalid-headers'
  | 'payload-not-json'
  | 'payload-too-large'
  | 'invalid-event';

/** An event given to `publish()` cannot be stored; nothing of that call was written. */
export class InvalidEventError extends TidingsError {
  override readonly name = 'InvalidEventError';
  readonly reason: InvalidEventReason;
  /** Position of the offending event in the `publish()` call. */
  readonly index: number;
  readonly topic: string | undefined;
  constructor(reason: InvalidEventReason, index: number, topic: string | undefined, detail: string) {
    super(`event #${index}${topic ? ` (topic "${topic}")` : ''} was not published: ${detail}`);
    this.reason = reason;
    this.index = index;
    this.topic = topic;
  }
}

/** A configuration value is missing or out of range. */
export class ConfigError extends TidingsError {
  override readonly name = 'ConfigError';
  readonly option: string;
  constructor(option: string, detail: string) {
    super(`invalid option "${option}": ${detail}`);
    this.option = option;
  }
}

/** The call needs the caller's open transaction and was given a connection outside one. */
export class NotInTransactionError extends TidingsError {
  override readonly name = 'NotInTransactionError';
  constructor(what: string) {
    super(
      `${what} must run inside the caller's transaction so that it commits or rolls back with the ` +
        "business data; pass the transaction you write that data with (a kysely Transaction, a pg client after BEGIN, or your ORM's transaction).",
    );
  }
}

/**
 * A transaction that tidings ran or checked did not commit: PostgreSQL answered COMMIT with
 * ROLLBACK because a statement inside it had failed (typically a handler that caught a database
 * error and carried on), or the transaction was found aborted before COMMIT. Nothing of it was
 * applied, and nothing is acknowledged for it: the work is tried again.
 */
export class TransactionAbortedError extends TidingsError {
  override readonly name = 'TransactionAbortedError';
  /** What ran in the transaction, e.g. `inbox.handle()`. */
  readonly what: string;
  constructor(what: string, detail: string) {
    super(
      `${what}: the transaction did not commit (${detail}). A statement in it failed and the error was ` +
        'caught without rolling back, so PostgreSQL discarded the whole transaction. Let database errors ' +
        'propagate out of the handler, or wrap the statement that may fail in a SAVEPOINT ' +
        "(kysely: trx.savepoint('x')), and roll back to it before carrying on.",
    );
    this.what = what;
  }
}

/**
 * A dead-letter retry or a replay would deliver again events written before the redelivery
 * horizon: the consumers' inboxes may already have forgotten that they applied them, so they
 * could be applied twice. Nothing was changed.
 */
export class BeyondHorizonError extends TidingsError {
  override readonly name = 'BeyondHorizonError';
  /** When the oldest of those events was written. */
  readonly oldest: Date;
  readonly horizonMs: number;
  constructor(what: string, oldest: Date, horizonMs: number) {
    super(
      `${what} would deliver again events written as early as ${oldest.toISOString()}, before the redelivery ` +
        `horizon of ${formatDuration(horizonMs)}; consumers' inboxes keep their dedup marks that long, so they may ` +
        'apply these events twice. Narrow the call to newer events, or pass beyondHorizon: true (CLI: ' +
        '--beyond-horizon) if every consumer keeps its marks longer or applies them idempotently.',
    );
    this.oldest = oldest;
    this.horizonMs = horizonMs;
  }
}

function formatDuration(ms: number): string {
  const units: [number, string][] = [[86_400_000, 'day'], [3_600_000, 'hour'], [60_000, 'minute'], [1_000, 'second']];
  for (const [size, unit] of units) {
    if (ms >= size && ms % size === 0) return `${ms / size} ${unit}${ms / size === 1 ? '' : 's'}`;
  }
  return `${ms} ms`;
}

/** The schema has not been migrated, or is older than this version of tidings needs. */
export class SchemaMissingError extends TidingsError {
  override readonly name = 'SchemaMissingError';
  readonly schema: string;
  constructor(schema: string, options?: { cause?: unknown; tables?: string; fix?: string }) {
    super(
      `the ${options?.tables ?? 'tidings'} tables in schema "${schema}" are missing or incomplete; ` +
        `run ${options?.fix ?? 'migrate() (or `tidings migrate`)'} first.`,
      options,
    );
    this.schema = schema;
  }
}

/** A feed reader asked for a position that retention has already deleted. */
export class CursorExpiredError extends TidingsError {
  override readonly name = 'CursorExpiredError';
  readonly cursor: string;
  constructor(cursor: string) {
    super(
      `cursor ${cursor} points before events that retention has deleted; events were missed. ` +
        'Resynchronise from your own state and restart the feed from the beginning or from now.',
    );
    this.cursor = cursor;
  }
}

/**
 * Why a cursor is refused: not one tidings produced (`unknown`), of the form tidings wrote before
 * log positions became commit sequence numbers (`legacy`), beyond the end of this log, such as a
 * cursor of another cluster (`ahead`), or with numbers out of the range a log position can take
 * (`out-of-range`).
 */
export type InvalidCursorReason = 'unknown' | 'legacy' | 'ahead' | 'out-of-range';

/** A cursor string cannot be placed in this log; `reason` says why. */
export class InvalidCursorError extends TidingsError {
  override readonly name = 'InvalidCursorError';
  readonly cursor: string;
  readonly reason: InvalidCursorReason;
  constructor(cursor: string, reason: InvalidCursorReason = 'unknown') {
    super(
      reason === 'legacy'
        ? `"${cursor}" is a cursor of the old (transaction id) form, which cannot be placed in commit order; ` +
            'resume from your own state and restart the feed from "start" or "now".'
        : reason === 'ahead'
          ? `"${cursor}" points beyond the end of this log (a cursor from another database or cluster?); events after it ` +
              'would be skipped. Resume from your own state and restart the feed from "start" or "now".'
          : `"${cursor}" is not a tidings cursor; pass back a cursor exactly as tidings returned it.`,
    );
    this.cursor = cursor;
    this.reason = reason;
  }
}

/**
 * The outbox's database is not the one its relay cursors were written on: restored from a dump or
 * moved to another cluster. Check the cursors, move them if needed (`moveCursors`), then record the
 * new cluster with `adoptCluster` (`tidings cluster adopt`).
 */
export class ClusterChangedError extends TidingsError {
  override readonly name = 'ClusterChangedError';
  readonly schema: string;
  readonly recorded: ClusterIdentity;
  readonly current: ClusterIdentity;
  constructor(schema: string, recorded: ClusterIdentity, current: ClusterIdentity) {
    super(
      `the outbox in schema "${schema}" was recorded on another cluster (events table ${recorded.eventsOid ?? '?'}, system ` +
        `${recorded.systemIdentifier ?? '?'}; now ${current.eventsOid}, ${current.systemIdentifier ?? '?'}): restored from a dump or ` +
        'moved. Relays refuse to run until you check the cursors (`tidings status`), move them if the destinations saw ' +
        'more or less than this log holds (`tidings cluster move-cursors --relay NAME --to-time TIME|--after-event ID`), ' +
        'and then record this cluster with `tidings cluster adopt` (adoptCluster()).',
    );
    this.schema = schema;
    this.recorded = recorded;
    this.current = current;
  }
}

/** Identity of the cluster an outbox lives in, as recorded by migrate() and adoptCluster(). */
export interface ClusterIdentity {
  /** The events table's OID: new after a restore or a copy to another cluster. */
  readonly eventsOid: string | null;
  /** pg_control_system().system_identifier, where the role may read it. */
  readonly systemIdentifier: string | null;
}

/**
 * A relay cursor, or the commit counter, does not fit the log: a cursor beyond the last commit
 * number drawn, or a counter behind numbers already in the log (a cut-over that did not carry the
 * sequence). Events committed now would be skipped or collide, so relays refuse to run.
 */
export class CursorAheadError extends TidingsError {
  override readonly name = 'CursorAheadError';
  readonly schema: string;
  /** `relay/partition` of each cursor ahead of the log, or `commit counter`. */
  readonly where: readonly string[];
  constructor(schema: string, where: readonly string[], head: string) {
    super(
      `in schema "${schema}", ${where.slice(0, 5).join(', ')}${where.length > 5 ? ` and ${where.length - 5} more` : ''} ` +
        `${where.length === 1 ? 'is' : 'are'} beyond the log's last commit number (${head}): events committed from now on ` +
        'would be skipped. Move the cursors (`tidings cluster move-cursors`) and record the cluster (`tidings cluster adopt`, ' +
        'which also moves the commit counter past every number in the log).',
    );
    this.schema = schema;
    this.where = where;
  }
}

/** This worker no longer holds the partition: another worker took it over, or the lease ran out. */
export class LeaseLostError extends TidingsError {
  override readonly name = 'LeaseLostError';
  readonly relay: string;
  readonly partition: number;
  constructor(relay: string, partition: number) {
    super(`relay "${relay}" lost its lease on partition ${partition}; another worker owns it now.`);
    this.relay = relay;
    this.partition = partition;
  }
}

/** A transport was used after `close()`: nothing of that send went out. */
export class TransportClosedError extends TidingsError {
  override readonly name = 'TransportClosedError';
  readonly transport: string;
  constructor(transport: string, detail = 'nothing was sent. Create a new transport to send again.') {
    super(`transport "${transport}" is closed; ${detail}`);
    this.transport = transport;
  }
}
